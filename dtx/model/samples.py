"""Fresh random inputs with real structure: specials where the tokenizer puts them, random
ordinary tokens in between, and a different real length (so different padding) on every row.

Parity checks, engine checks and benchmarks all draw from here, so none of them is ever run on
zeros or on one lucky shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtx.model.segments import Batch, PairSegmenter


@dataclass
class PairBatch:
    question: Batch  # (bq, lq)
    passage: Batch  # (b, lp)
    pad_id: int  # the tokenizer's pad token, for the coupled packing

    def coupled(self) -> Batch:
        """The same pairs as the coupled model reads them: question then passage, packed, right-padded."""
        q, p = self.question, self.passage
        b = p.input_ids.shape[0]
        rows = np.arange(b) % q.input_ids.shape[0]
        width = q.input_ids.shape[1] + p.input_ids.shape[1]
        out = [np.full((b, width), self.pad_id, np.int64), np.zeros((b, width), np.int64), np.zeros((b, width), np.int64)]
        for i, r in enumerate(rows):
            nq, np_ = int(q.attention_mask[r].sum()), int(p.attention_mask[i].sum())
            for dst, qs, ps in zip(out, (q.input_ids, q.attention_mask, q.token_type_ids), (p.input_ids, p.attention_mask, p.token_type_ids)):
                dst[i, :nq], dst[i, nq : nq + np_] = qs[r, :nq], ps[i, :np_]
        return Batch(*out)


def random_ids(rng: np.random.Generator, n: int, vocab_size: int, specials: set[int]) -> list[int]:
    ids = rng.integers(0, vocab_size, size=n * 2)
    return [int(i) for i in ids if int(i) not in specials][:n]


def random_segments(seg: PairSegmenter, rng: np.random.Generator, lengths, width: int, side: str) -> Batch:
    """Segments of the given real lengths (specials included), random ordinary tokens, padded to `width`."""
    tok = seg.tokenizer
    specials = set(tok.all_special_ids)
    extra = seg.special_tokens[0 if side == "question" else 1]
    return seg.pad([seg.from_ids(random_ids(rng, int(n) - extra, len(tok), specials), side) for n in lengths], width)


def random_pairs(seg: PairSegmenter, rng: np.random.Generator, b: int, lq: int, lp: int, bq: int | None = None) -> PairBatch:
    """bq questions padded to lq tokens and b passages padded to lp; real lengths vary per row.

    The longest row of each side fills its width exactly, so the shapes are the requested ones.
    """
    bq = b if bq is None else bq

    def side(rows: int, width: int, kind: str) -> Batch:
        lengths = rng.integers(max(1, width // 2), width + 1, size=rows)
        lengths[0] = width
        return random_segments(seg, rng, lengths, width, kind)

    return PairBatch(side(bq, lq, "question"), side(b, lp, "passage"), seg.tokenizer.pad_token_id)
