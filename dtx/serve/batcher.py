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


@dataclass
class Job:
    """One request's work: `prepare()` (candidates, run alone in the worker) then a place in a batch."""

    prepare: Callable[[], object]
    pairs_hint: int
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]


class MicroBatcher:
    def __init__(self, run_batch: Callable[[list[object]], list[object]], max_pairs: int = 128, max_wait_ms: float = 5.0, on_batch: Callable[[int, float], None] | None = None) -> None:
        self.run_batch, self.max_pairs, self.max_wait = run_batch, max_pairs, max_wait_ms / 1e3
        self.on_batch = on_batch or (lambda pairs, ms: None)
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None

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
        """Prepare each job (its own failure is its own), then score the prepared ones together."""
        ready, items = [], []
        for job in jobs:
            try:
                items.append(job.prepare())
                ready.append(job)
            except Exception as e:  # noqa: BLE001 - handed to the request that caused it
                _resolve(job, exc=e)
        if not ready:
            return
        started = time.perf_counter()
        try:
            results = self.run_batch(items)
        except Exception as e:  # noqa: BLE001 - the batch failed as a whole: every caller hears why
            for job in ready:
                _resolve(job, exc=e)
            return
        self.on_batch(sum(getattr(i, "pairs", 1) for i in items), (time.perf_counter() - started) * 1e3)
        for job, result in zip(ready, results):
            _resolve(job, result=result)


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
