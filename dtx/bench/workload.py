"""The query workload: one question against K candidate passages, coupled and decoupled.

Decoupled: the question once through the input component, then the K passages' cached
representations (computed beforehand, as at indexing time, and kept out of the query time)
through the cross component. Coupled: the K (question, passage) pairs through every layer.
Every query draws a fresh question and K passages from the pool, with fresh random token ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from dtx.engines.runner import Runner
from dtx.model.samples import PairBatch, random_segments
from dtx.model.segments import Batch, PairSegmenter


@dataclass
class Shape:
    seq_q: int  # question tokens, specials included
    seq_p: int  # passage tokens, specials included
    candidates: int  # K passages per query


class QueryWorkload:
    """A pool of random passages, their cached representations, and timed queries over them."""

    def __init__(self, runner: Runner, seg: PairSegmenter, shape: Shape, pool: int | None = None, seed: int = 0) -> None:
        self.runner, self.seg, self.shape = runner, seg, shape
        self.rng = np.random.default_rng(seed)
        self.pool_size = pool or max(2 * shape.candidates, 8)
        self.passages = self._segments(self.pool_size, shape.seq_p, "passage")  # (pool, lp)
        self.cache: np.ndarray | None = None

    def _segments(self, n: int, width: int, side: str) -> Batch:
        return random_segments(self.seg, self.rng, [width] * n, width, side)  # every row full: no padding

    def index(self, batch: int = 8) -> float:
        """Encode the whole pool as at indexing time; returns seconds per passage."""
        start = time.perf_counter()
        reps = []
        for i in range(0, self.pool_size, batch):
            rows = slice(i, i + batch)
            reps.append(self.runner.encode(Batch(self.passages.input_ids[rows], self.passages.attention_mask[rows], self.passages.token_type_ids[rows])))
        self.cache = np.concatenate(reps)  # (pool, lp, rep_dim)
        return (time.perf_counter() - start) / self.pool_size

    def draw(self) -> tuple[Batch, np.ndarray]:
        """A fresh question and the pool rows of K candidates."""
        return self._segments(1, self.shape.seq_q, "question"), self.rng.choice(self.pool_size, self.shape.candidates, replace=False)

    def decoupled(self, question: Batch, rows: np.ndarray) -> float:
        assert self.cache is not None, "index() the pool first"
        reps, mask = self.cache[rows], self.passages.attention_mask[rows]  # fetched from the cache
        start = time.perf_counter()
        self.runner.cross(self.runner.encode(question), question.attention_mask, reps, mask)
        return time.perf_counter() - start

    def coupled(self, question: Batch, rows: np.ndarray, runner: Runner | None = None) -> float:
        p = self.passages
        pairs = PairBatch(question, Batch(p.input_ids[rows], p.attention_mask[rows], p.token_type_ids[rows]), self.seg.tokenizer.pad_token_id).coupled()
        start = time.perf_counter()
        (runner or self.runner).coupled(pairs)
        return time.perf_counter() - start
