"""Real (question, passage) batches for INT8 calibration and for measuring precision drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dtx.data.pairs import Pair, read_pairs
from dtx.model.samples import PairBatch
from dtx.model.segments import PairSegmenter


def real_batches(seg: PairSegmenter, pairs: list[Pair], batch_size: int = 8) -> list[PairBatch]:
    """Each pair as the question segment and its passage's first window, `batch_size` pairs a batch."""
    out = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        q = seg.pad([seg.question(p.question) for p in chunk])
        p = seg.pad([seg.passage(p.passage)[0] for p in chunk])
        out.append(PairBatch(q, p, seg.tokenizer.pad_token_id))
    return out


def load_batches(path: str | Path, seg: PairSegmenter, limit: int, seed: int = 0, batch_size: int = 8) -> list[PairBatch]:
    """`limit` pairs drawn without replacement (fixed seed) from a pairs file."""
    pairs = read_pairs(path)
    order = np.random.default_rng(seed).permutation(len(pairs))[:limit]
    return real_batches(seg, [pairs[i] for i in order], batch_size)


def graph_feeds(batches: list[PairBatch], encode) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration feeds for each graph; `encode` is the fp32 input component (for cross feeds)."""
    feeds: dict[str, list] = {"input": [], "cross": [], "coupled": []}
    for b in batches:
        feeds["input"] += [b.question.as_dict(), b.passage.as_dict()]
        feeds["cross"].append(
            {"q_hidden": encode(b.question), "q_mask": b.question.attention_mask, "p_hidden": encode(b.passage), "p_mask": b.passage.attention_mask}
        )
        feeds["coupled"].append(b.coupled().as_dict())
    return feeds
