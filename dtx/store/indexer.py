"""`dtx index`: run the input component over a corpus once and commit the representations.

Resumable by construction: passages are committed in chunks, each chunk (all windows of each of
its passages) in one atomic Lance commit, and a run first reads which ids are committed and
skips them. Killed at any point and run again, the store ends with every passage exactly once.
Windows are sorted by length within a chunk before batching (length bucketing), so a batch pads
to its own longest window rather than to `max_passage_len`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from dtx.engines import Engine, open_engine
from dtx.errors import DtxError
from dtx.store.corpus import read_corpus
from dtx.store.passage_store import PassageStore, StoreError, StoreInfo, text_digest
from dtx.store.windows import Window, commit, encode_windows, length_batches, split_windows


@dataclass
class IndexReport:
    passages_in_corpus: int
    already_stored: int
    indexed: int
    windows: int
    seconds: float
    backend: str

    @property
    def passages_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "passages_per_s": self.passages_per_s}

    def rows(self) -> list[list]:
        """(field, value) rows for `dtx index`'s table."""
        return [[k, v] for k, v in asdict(self).items()] + [["passages/s", round(self.passages_per_s, 2)]]


def index_corpus(
    corpus: str | Path,
    engine: Engine | str | Path,
    store_uri: str | Path,
    dtype: str = "fp16",
    batch: int = 32,
    chunk: int = 512,
    limit: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
    progress: bool = True,
    split: str = "all",
) -> IndexReport:
    """Index `corpus` into the store at `store_uri` with the engine's input component (an opened `Engine`, or its directory)."""
    if batch < 1 or chunk < 1:
        raise DtxError("--batch and the chunk size must be at least 1")
    passages = read_corpus(corpus, limit, split)
    if not isinstance(engine, Engine):
        engine = open_engine(engine, threads=threads)
    info = StoreInfo.from_engine(engine, dtype)
    segmenter = engine.segmenter
    store = PassageStore.create_or_open(store_uri, info)
    started = time.perf_counter()
    with store.writer_lock():
        done = store.text_digests()
        changed = [p for p in passages if p.id in done and done[p.id] != text_digest(p.text)]
        if changed:
            raise StoreError(
                f"{len(changed)} passage id(s) are already in {store_uri} with other text, e.g. {changed[0].id!r}; "
                "index the new texts into a new store (-o NEW), or give changed passages new ids"
            )
        todo = [p for p in passages if p.id not in done]
        bar = tqdm(total=len(todo), desc="index", unit="passage", disable=not progress)
        if use_ray:
            from dtx.store.ray_index import index_with_ray

            n_windows = index_with_ray(todo, engine, store, batch, chunk, ray_address, threads, bar)
        else:
            n_windows = _index_locally(todo, engine, store, batch, chunk, bar)
        bar.close()
        store.build_indexes()
    seconds = time.perf_counter() - started
    return IndexReport(len(passages), len(passages) - len(todo), len(todo), n_windows, seconds, "ray" if use_ray else "local")


def _index_locally(todo: list, engine: Engine, store: PassageStore, batch: int, chunk: int, bar) -> int:
    """Encode `todo` in this process, commit chunk by chunk; returns the number of windows."""
    n_windows = 0
    with engine:
        for start in range(0, len(todo), chunk):
            windows = split_windows(todo[start : start + chunk], engine.segmenter)
            done_windows, reps = [], []
            for group in length_batches(windows, batch):
                reps += encode_windows(engine.runner, engine.segmenter, group)
                done_windows += group
            commit(store, done_windows, reps)
            n_windows += len(windows)
            bar.update(len(todo[start : start + chunk]))
            bar.set_postfix(windows=n_windows)
    return n_windows


__all__ = ["IndexReport", "Window", "index_corpus", "split_windows", "length_batches", "encode_windows", "commit"]
