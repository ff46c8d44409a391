"""`dtx index --ray [ADDRESS]`: the same input component on a Ray cluster, the same store.

Ray Data runs the encoding: the driver tokenizes and length-sorts the windows, `map_batches`
sends them to an actor pool whose actors each load the engine once (GPU actors, one GPU each,
when the cluster has GPUs and the engine runs on CUDA), and the driver commits the results with
the single-process writer. A passage is committed only once all its windows are back, in the
same atomic chunks, so a killed Ray run resumes exactly as a local one does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dtx.errors import DtxError, first_line
from dtx.model.segments import Segment
from dtx.store.passage_store import PassageStore
from dtx.store.windows import Window, commit, encode_windows, split_windows


class _EncodeActor:
    """One per Ray worker: loads the engine once and encodes batches of token-id rows."""

    def __init__(self, engine_dir: str, threads: int | None) -> None:
        from dtx.engines import open_engine

        self.engine = open_engine(engine_dir, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        windows = [Window(None, 0, Segment(list(ids), list(types), [])) for ids, types in zip(batch["input_ids"], batch["token_type_ids"])]
        reps = encode_windows(self.engine.runner, self.engine.segmenter, windows)
        return {"row": batch["row"], "rep": np.array([r.astype(np.float32).tobytes() for r in reps], dtype=object)}


def connect_ray(address: str | None):
    """Ray, joined at `address` or started here on every core; one line naming the address when it cannot be."""
    import ray

    if ray.is_initialized():
        return ray
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    except Exception as e:
        raise DtxError(f"cannot start or reach Ray at {address or 'a local instance'} ({first_line(e)}); check the address or run without --ray") from None
    return ray


def index_with_ray(todo, engine, store: PassageStore, batch: int, chunk: int, address: str | None, threads: int | None, bar) -> int:
    """Encode `todo` passages on Ray with `engine` (an opened `Engine`: each actor opens its directory), commit them to `store`; returns the number of windows."""
    ray = connect_ray(address)
    windows = sorted(split_windows(todo, engine.segmenter), key=lambda w: len(w.segment))
    if not windows:
        return 0
    gpus = int(ray.cluster_resources().get("GPU", 0))
    on_gpu = gpus > 0 and engine.on_gpu
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = gpus if on_gpu else max(1, cpus // (threads or 1))
    rows = [{"row": i, "input_ids": w.segment.input_ids, "token_type_ids": w.segment.token_type_ids} for i, w in enumerate(windows)]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch, 4 * actors)))
    encoded = ds.map_batches(
        _EncodeActor,
        fn_constructor_kwargs={"engine_dir": str(Path(engine.path).resolve()), "threads": threads or 1},
        batch_size=batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if on_gpu else 0,
    )
    remaining = {}
    for w in windows:
        remaining[w.passage.id] = remaining.get(w.passage.id, 0) + 1
    ready: list = []
    reps: dict[int, np.ndarray] = {}
    d = store.info.rep_dim
    for out in encoded.iter_batches(batch_format="numpy"):
        for row, blob in zip(out["row"], out["rep"]):
            w = windows[int(row)]
            reps[int(row)] = np.frombuffer(blob, np.float32).reshape(len(w.segment), d)
            remaining[w.passage.id] -= 1
            if remaining[w.passage.id] == 0:
                ready.append(w.passage.id)
        if len(ready) >= chunk:
            _commit_ready(store, windows, reps, set(ready), bar)
            ready = []
    _commit_ready(store, windows, reps, set(ready), bar)
    return len(windows)


def _commit_ready(store, windows, reps, ready: set[str], bar) -> None:
    if not ready:
        return
    rows = sorted((i for i in reps if windows[i].passage.id in ready), key=lambda i: (windows[i].passage.id, windows[i].index))
    commit(store, [windows[i] for i in rows], [reps.pop(i) for i in rows])
    bar.update(len(ready))
