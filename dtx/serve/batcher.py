"""Merge concurrent requests into one cross-component call.

A request waits at most `max_wait_ms` for company; a batch closes early once it holds `max_pairs`
(question, passage window) pairs. Each batch runs in one worker thread (the engine is used by one
batch at a time), and a request that fails on its own (an unknown passage id) fails alone: its
error goes to its caller, the rest of the batch is answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Job:
    """One request's work: `prepare()` (candidates, run alone in the worker) then a place in a batch."""

    prepare: Callable[[], object]
    pairs_hint: int
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]


# (max pairs, max wait ms) when `dtx serve` is not told. Measured on the 2-core CPU (docs/serving.md):
# a merged cross call costs more per pair than separate ones (6 requests per call: -15% throughput
# at 16 clients, 14 per call: -25%), so a CPU engine serves each request in its own call; an
# accelerator runs a large call in about the time of a small one, so requests are merged there.
DEFAULT_BATCHING = {"cpu": (1, 0.0), "cuda": (128, 5.0)}


def default_batching(device: str) -> tuple[int, float]:
    """The measured defaults for an engine on `device` (an accelerator other than CUDA counts as CUDA)."""
    return DEFAULT_BATCHING.get(device, DEFAULT_BATCHING["cuda"])


class Batcher(Protocol):
    """What the API needs from a batcher: start/stop with the server, and `submit` a request's
    `prepare` to get its scored result (MicroBatcher here, `@serve.batch` under Ray Serve)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, prepare: Callable[[], object], pairs_hint: int) -> object: ...

    @property
    def limits(self) -> dict: ...  # {"max_pairs", "max_wait_ms"}: reported by /ready


class MicroBatcher:
    def __init__(self, run_batch: Callable[[list[object]], list[object]], max_pairs: int, max_wait_ms: float, on_batch: Callable[[int, float], None] | None = None) -> None:
        self.run_batch, self.max_pairs, self.max_wait = run_batch, max_pairs, max_wait_ms / 1e3
        self.on_batch = on_batch or (lambda pairs, ms: None)
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    @property
    def limits(self) -> dict:
        return {"max_pairs": self.max_pairs, "max_wait_ms": self.max_wait * 1e3}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, prepare: Callable[[], object], pairs_hint: int) -> object:
        job = Job(prepare, pairs_hint, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _loop(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            pairs, deadline = jobs[0].pairs_hint, time.monotonic() + self.max_wait
            while pairs < self.max_pairs:
                if not self.queue.empty():  # already waiting: taken whatever max_wait says
                    job = self.queue.get_nowait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                jobs.append(job)
                pairs += job.pairs_hint
            await asyncio.to_thread(self._run, jobs)

    def _run(self, jobs: list[Job]) -> None:
        outcomes = prepare_and_score([job.prepare for job in jobs], self.run_batch, self.on_batch)
        for job, outcome in zip(jobs, outcomes):
            if isinstance(outcome, BaseException):
                _resolve(job, exc=outcome)
            else:
                _resolve(job, result=outcome)


def prepare_and_score(prepares: list[Callable[[], object]], run_batch: Callable[[list[object]], list[object]], on_batch: Callable[[int, float], None]) -> list[object]:
    """Prepare each request (its own failure is its own), then score the prepared ones in one call.

    Returns one outcome per request, in order: its result, or the exception it raised (a whole batch
    that fails gives every prepared request the batch's exception). Shared by MicroBatcher and the
    Ray Serve replica so both batch the same way.
    """
    outcomes: list[object] = [None] * len(prepares)
    ready, items = [], []
    for n, prepare in enumerate(prepares):
        try:
            items.append(prepare())
            ready.append(n)
        except Exception as e:  # noqa: BLE001 - handed to the request that caused it
            outcomes[n] = e
    if not ready:
        return outcomes
    started = time.perf_counter()
    try:
        results = run_batch(items)
    except Exception as e:  # noqa: BLE001 - the batch failed as a whole: every caller hears why
        for n in ready:
            outcomes[n] = e
        return outcomes
    on_batch(sum(getattr(i, "pairs", 1) for i in items), (time.perf_counter() - started) * 1e3)
    for n, result in zip(ready, results):
        outcomes[n] = result
    return outcomes


def _resolve(job: Job, result: object = None, exc: BaseException | None = None) -> None:
    loop = job.future.get_loop()

    def settle() -> None:
        if job.future.done():
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    loop.call_soon_threadsafe(settle)
