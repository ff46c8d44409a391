"""`dtx serve`: the HTTP service over a store or inline documents."""

from __future__ import annotations

from pathlib import Path

import click

from dtx.commands.common import quiet_transformers
from dtx.errors import DtxError


@click.command()
@click.argument("store", required=False)
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), help="Engine that reads the store (default: the one that built it); required without STORE.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-batch-pairs", type=click.IntRange(1), help="A micro-batch closes once it holds this many (question, passage) pairs [default: 1 on a CPU engine, where merging was measured slower; 128 on CUDA].")
@click.option("--max-wait-ms", type=click.FloatRange(0), help="How long a request waits for others to share its cross-component call [default: 0 on CPU, 5 on CUDA].")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (per replica with --ray).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, help="Serve on Ray Serve: `--ray` starts a local instance, `--ray ADDRESS` joins a cluster (STORE and --engine must be reachable from its nodes).")
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True, help="Ray Serve replicas, each with its own engine and store reader (with --ray).")
def serve(store, engine_dir, host, port, max_batch_pairs, max_wait_ms, threads, ray_address, replicas):
    """Serve /v1/rerank, /v1/answer and /rerank over HTTP (OpenAPI at /docs, a search page at /); STORE's passages by id or BM25, or documents sent inline.

    Without STORE, only documents sent with the request are scored (--engine required). The store and
    engine are opened and checked before the server listens; SIGTERM finishes the requests in flight.
    """
    quiet_transformers()
    if store is None and engine_dir is None:
        raise click.UsageError("pass STORE, or --engine ENGINE_DIR to serve documents sent inline")
    if replicas > 1 and ray_address is None:
        raise click.UsageError("--replicas needs --ray (one process serves one replica)")
    try:
        from dtx.serve.app import check_port, create_app, micro_batching, run_server
        from dtx.serve.batcher import default_batching
    except ImportError as e:
        raise DtxError(f"dtx serve needs FastAPI and uvicorn ({e.name} is missing): pip install -e '.[serve]'") from None
    from dtx.query import QueryPipeline

    check_port(host, port)
    pipe = QueryPipeline.open(store, engine_dir, threads=threads)
    if pipe.store is not None:
        pipe.store.probe()  # a missing data file or index: one line now, not a failure on every request
    pairs, wait = default_batching(pipe.engine.device)
    max_batch_pairs, max_wait_ms = max_batch_pairs or pairs, wait if max_wait_ms is None else max_wait_ms
    where = f"Ray Serve ({replicas} replica{'s' * (replicas > 1)})" if ray_address else "uvicorn"
    click.echo(f"serving {store or 'inline documents'} ({pipe.task}) on http://{host}:{port} with {where}, cross calls of up to {max_batch_pairs} pairs waiting up to {max_wait_ms:g} ms (OpenAPI: /docs)")
    if ray_address is None:
        run_server(create_app(pipe, micro_batching(max_batch_pairs, max_wait_ms)), host, port)
        return
    pipe.close()  # checked; each replica opens its own
    try:
        from dtx.serve.ray_app import run_on_ray
    except ImportError as e:
        raise DtxError(f"dtx serve --ray needs Ray Serve ({e.name} is missing): pip install -e '.[serve,ray]'") from None
    local = lambda p: p if p is None or "://" in p else str(Path(p).resolve())  # noqa: E731 - replicas run in other directories
    run_on_ray(local(store), local(engine_dir), None if ray_address == "local" else ray_address, host, port, replicas, threads, max_batch_pairs, max_wait_ms)
