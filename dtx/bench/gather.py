"""`dtx bench-store`: what fetching K cached passages adds to a decoupled query.

A store of N passages with random representations (latency does not depend on the values) is
built once, resumably, in the layout `dtx index` writes; then each timed query fetches K random
ids (B-tree lookup, read, dequantize, pad) and runs the decoupled query on what it fetched
(question through the input component, the K passages through the cross component). Both are
timed in the same loop, so the ratio is measured under the same machine state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dtx.bench.stats import Latency
from dtx.errors import DtxError
from dtx.model.samples import random_segments
from dtx.store.passage_store import PassageStore, StoreInfo
from dtx.task import Task

RANDOM_EXPORT = "random-representations"  # marks a timing-only store: no model made its values


@dataclass
class GatherConfig:
    store: str
    passages: int
    seq_p: int
    candidates: int = 20
    dtype: str = "int8"
    runs: int = 200
    seq_q: int = 32  # question tokens of each timed query (the served shape)
    warmup: int = 5
    chunk: int = 20_000
    seed: int = 0

    def check(self) -> None:
        """Refuse, before any work, a bench that cannot run: K distinct passages are drawn per query."""
        if self.candidates > self.passages:
            raise DtxError(f"-K {self.candidates} passages per query is more than the {self.passages} in the timing store; pass -K {self.passages} or less, or --passages {self.candidates} or more")


def random_store(cfg: GatherConfig, rep_dim: int, progress: bool = True) -> PassageStore:
    """The timing store at `cfg.store` with at least `cfg.passages` rows (adds what is missing)."""
    import pyarrow as pa

    info = StoreInfo(RANDOM_EXPORT, "", rep_dim, cfg.dtype, Task.QA, cfg.seq_p, 0)
    store = PassageStore.create_or_open(cfg.store, info)
    have = store.dataset.count_rows()
    rng = np.random.default_rng(cfg.seed + have)
    n, length = cfg.passages, cfg.seq_p
    with store.writer_lock(), tqdm(total=n, initial=min(have, n), desc="random store", unit="passage", disable=not progress) as bar:
        for start in range(have, n, cfg.chunk):
            rows = min(cfg.chunk, n - start)
            if cfg.dtype == "int8":
                values = rng.integers(-127, 128, (rows, length * rep_dim), dtype=np.int8).view(np.uint8)
                scales = rng.uniform(0.001, 0.1, (rows, length)).astype(np.float32)
            else:
                values = rng.standard_normal((rows, length * rep_dim), dtype=np.float32).astype(np.float16).view(np.uint8)
                scales = np.zeros((rows, 0), np.float32)
            tokens = pa.ListArray.from_arrays(pa.array(np.arange(0, (rows + 1) * length, length, dtype=np.int32)), pa.array(rng.integers(1000, 30000, rows * length, dtype=np.int32)))
            offsets = pa.ListArray.from_arrays(pa.array(np.arange(0, (rows + 1) * 2 * length, 2 * length, dtype=np.int32)), pa.array(np.zeros(rows * 2 * length, np.int32)))
            store.append_encoded(
                [f"r{i}" for i in range(start, start + rows)],
                [0] * rows,
                [f"passage {i}" for i in range(start, start + rows)],
                tokens,
                offsets,
                [v.tobytes() for v in values],
                [s.tobytes() for s in scales],
            )
            bar.update(rows)
        store.build_indexes(text=False)
    return store


def time_gather(cfg: GatherConfig, engine, threads: int | None = None, progress: bool = True) -> dict:
    """Fetch and decoupled-query latencies over `cfg.runs` queries, interleaved (`engine`: an opened `Engine`, or its directory)."""
    from dtx.engines import Engine, open_engine

    cfg.check()
    if not isinstance(engine, Engine):
        engine = open_engine(engine, threads=threads)
    export = engine.export
    window = export.decoupling.max_passage_len
    if cfg.seq_p > window:
        raise DtxError(f"--seq-p {cfg.seq_p} is longer than the engine's passage window ({window} tokens); pass at most {window}")
    store = random_store(cfg, export.rep_dim, progress)
    seg = engine.segmenter
    n = store.dataset.count_rows()
    rng = np.random.default_rng(cfg.seed + 1)
    fetch, query = [], []
    with engine:
        runner = engine.runner
        for i in tqdm(range(cfg.warmup + cfg.runs), desc="gather + query", unit="query", disable=not progress):
            ids = [f"r{j}" for j in rng.choice(n, cfg.candidates, replace=False)]
            t = time.perf_counter()
            cached = store.fetch(ids, with_text=False)
            t_fetch = time.perf_counter() - t
            question = random_segments(seg, rng, [cfg.seq_q], cfg.seq_q, "question")
            t = time.perf_counter()
            runner.cross(runner.encode(question), question.attention_mask, cached.reps, cached.mask)
            t_query = time.perf_counter() - t
            if i >= cfg.warmup:
                fetch.append(t_fetch)
                query.append(t_query)
    f, q = Latency(fetch), Latency(query)
    return {
        "store": cfg.store,
        "passages_in_store": n,
        "store_bytes": sum(p.stat().st_size for p in Path(cfg.store).rglob("*") if p.is_file()) if Path(cfg.store).exists() else None,
        "dtype": cfg.dtype,
        "rep_dim": export.rep_dim,
        "seq_p": cfg.seq_p,
        "candidates": cfg.candidates,
        "engine": str(engine.path),
        "fetch": f.to_dict(),
        "decoupled_query": q.to_dict(),
        "fetch_over_query_p50": f.p50 / q.p50,
    }
