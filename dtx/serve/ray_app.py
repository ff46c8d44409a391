"""`dtx serve --ray [ADDRESS]`: the same HTTP API as a Ray Serve deployment, scaled out in replicas.

Each replica opens the store and the engine once and serves app.py's FastAPI app unchanged; only
the batching differs: requests reaching one replica are merged by `@serve.batch` on
`DtxReplica.score_batch`, whose batch size is counted in (question, passage) pairs through
`batch_size_fn` (a request's documents, or its top_k), not in requests. A request larger than the
cap counts as the cap, so it runs alone instead of being refused. Ray's proxy spreads requests over
the replicas; /metrics is the answering replica's own registry (Ray exports cluster-wide metrics).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

from ray import serve

from dtx.errors import DtxError
from dtx.serve.app import Service, create_app
from dtx.serve.batcher import prepare_and_score

APP_NAME = "dtx"


def _pairs_in(batch: list[tuple[Callable[[], object], int]]) -> int:
    return sum(size for _, size in batch)


class _ServeBatcher:
    """The Batcher app.py expects, over the replica's `@serve.batch` method."""

    def __init__(self, replica: "DtxReplica") -> None:
        self.replica = replica

    @property
    def limits(self) -> dict:
        return {"max_pairs": self.replica.max_pairs, "max_wait_ms": self.replica.max_wait_ms, "per": "replica"}

    def start(self) -> None:
        """Ray Serve's batch queue starts with the first call."""

    async def stop(self) -> None:
        """Ray Serve drains the replica's queue on shutdown."""

    async def submit(self, prepare: Callable[[], object], pairs_hint: int) -> object:
        outcome = await self.replica.score_batch((prepare, min(pairs_hint, self.replica.max_pairs)))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@serve.deployment(name="dtx")
@serve.ingress()
class DtxReplica:
    """One replica: its own pipeline (store + engine), the API, a pair-counted batch queue."""

    def __init__(self, store: str | None, engine_dir: str | None, threads: int | None, max_pairs: int, max_wait_ms: float) -> None:
        from dtx.query import QueryPipeline

        self.pipe = QueryPipeline.open(store, engine_dir, threads=threads)
        self.max_pairs, self.max_wait_ms = max_pairs, max_wait_ms
        self.service: Service | None = None
        self.score_batch.set_max_batch_size(max_pairs)
        self.score_batch.set_batch_wait_timeout_s(max_wait_ms / 1e3)

    def __serve_build_asgi_app__(self):
        return create_app(self.pipe, self._batcher)

    def _batcher(self, service: Service) -> _ServeBatcher:
        self.service = service
        return _ServeBatcher(self)

    @serve.batch(batch_size_fn=_pairs_in)  # size and wait set per replica in __init__
    async def score_batch(self, batch: list[tuple[Callable[[], object], int]]) -> list[object]:
        """One cross-component call for the batch (in a worker thread: the event loop keeps accepting)."""
        return await asyncio.to_thread(prepare_and_score, [prepare for prepare, _ in batch], self.service.score, self.service.observe_batch)


def run_on_ray(store: str | None, engine_dir: str | None, address: str | None, host: str, port: int, replicas: int, threads: int | None, max_pairs: int, max_wait_ms: float) -> None:
    """Deploy on Ray (a local instance, or the cluster at `address`) and serve until SIGTERM/SIGINT,
    then delete the application (replicas finish what they hold) and return."""
    from dtx.store.ray_index import connect_ray

    stop = threading.Event()  # set by SIGTERM/SIGINT, also while the replicas are still starting
    connect_ray(address)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    actor = {"num_cpus": threads or 1}
    app = DtxReplica.options(num_replicas=replicas, ray_actor_options=actor).bind(store, engine_dir, threads, max_pairs, max_wait_ms)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=APP_NAME, route_prefix="/")
    except Exception as e:  # noqa: BLE001 - Ray's failures arrive as deep tracebacks: one line, the cause last
        serve.shutdown()
        raise DtxError(f"Ray Serve could not start the application ({str(e).strip().splitlines()[-1][:300]}); see `ray status`, or serve without --ray") from None
    stop.wait()
    serve.delete(APP_NAME)
    serve.shutdown()
