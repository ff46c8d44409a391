"""Passage windows, their encoding and their commit: the one path both encoders (local and Ray) share.

`split_windows` cuts passages into windows, `encode_windows` runs the input component on a batch of
them, and `commit` appends a chunk of whole passages (the exactly-once unit) to the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtx.model.segments import PairSegmenter, Segment
from dtx.store.corpus import Passage
from dtx.store.passage_store import PassageStore


@dataclass
class Window:
    passage: Passage
    index: int
    segment: Segment


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
