"""`dtx index`: run the input component over a corpus once and commit the representations.

Resumable by construction: passages are committed in chunks, each chunk (all windows of each of
its passages) in one atomic Lance commit, and a run first reads which ids are committed and
skips them. Killed at any point and run again, the store ends with every passage exactly once.
Windows are sorted by length within a chunk before batching (length bucketing), so a batch pads
to its own longest window rather than to `max_passage_len`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dtx.errors import DtxError
from dtx.model.segments import PairSegmenter, Segment
from dtx.store.corpus import Passage, read_corpus
from dtx.store.passage_store import PassageStore, StoreError, StoreInfo, text_digest


@dataclass
class Window:
    passage: Passage
    index: int
    segment: Segment


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


def split_windows(passages: list[Passage], segmenter: PairSegmenter) -> list[Window]:
    return [Window(p, i, s) for p in passages for i, s in enumerate(segmenter.passage(p.text))]


def length_batches(windows: list[Window], batch: int) -> list[list[Window]]:
    """Batches of similar length: sort by token count, then cut every `batch` windows."""
    ordered = sorted(windows, key=lambda w: len(w.segment))
    return [ordered[i : i + batch] for i in range(0, len(ordered), batch)]


def encode_windows(runner, segmenter: PairSegmenter, windows: list[Window]) -> list[np.ndarray]:
    """Input component on one batch: each window's unpadded (tokens, rep_dim) float32 representation."""
    padded = segmenter.pad([w.segment for w in windows])
    hidden = runner.encode(padded)
    return [hidden[i, : len(w.segment)] for i, w in enumerate(windows)]


def commit(store: PassageStore, windows: list[Window], reps: list[np.ndarray]) -> None:
    """Append one chunk; every passage in it must have all its windows here (exactly-once unit)."""
    store.append(
        ids=[w.passage.id for w in windows],
        windows=[w.index for w in windows],
        texts=[w.passage.text if w.index == 0 else None for w in windows],
        token_ids=[w.segment.input_ids for w in windows],
        offsets=[w.segment.offsets for w in windows],
        reps=reps,
    )


def index_corpus(
    corpus: str | Path,
    engine_dir: str | Path,
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
    """Index `corpus` into the store at `store_uri` with the engine's input component."""
    from dtx.engines import load_engine
    from dtx.engines.manifest import read_engine_export

    if batch < 1 or chunk < 1:
        raise DtxError("--batch and the chunk size must be at least 1")
    passages = read_corpus(corpus, limit, split)
    info = StoreInfo.from_engine(engine_dir, dtype)
    segmenter = read_engine_export(engine_dir).segmenter()
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

            n_windows = index_with_ray(todo, engine_dir, store, segmenter, batch, chunk, ray_address, threads, bar)
        else:
            n_windows = 0
            with load_engine(engine_dir, threads=threads) as runner:
                for start in range(0, len(todo), chunk):
                    windows = split_windows(todo[start : start + chunk], segmenter)
                    done_windows, reps = [], []
                    for group in length_batches(windows, batch):
                        reps += encode_windows(runner, segmenter, group)
                        done_windows += group
                    commit(store, done_windows, reps)
                    n_windows += len(windows)
                    bar.update(len(todo[start : start + chunk]))
                    bar.set_postfix(windows=n_windows)
        bar.close()
        store.build_indexes()
    seconds = time.perf_counter() - started
    return IndexReport(len(passages), len(passages) - len(todo), len(todo), n_windows, seconds, "ray" if use_ray else "local")
