"""Turn (question, passage) text into the two segments the decoupled model reads.

The coupled model reads `tokenizer(question, passage)`; the decoupled one reads the same tokens
cut after the first separator (BERT: `[CLS] q [SEP]` | `p [SEP]`; RoBERTa: `<s> q </s>` |
`</s> p </s>`). The special-token layout is read off the tokenizer itself by encoding a pair, so
no per-model table is needed. A passage is tokenized without its question, which is what makes
its representation cacheable; long passages become overlapping windows exactly as the coupled
tokenizer's `truncation="only_second", stride=..., return_overflowing_tokens=True` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from dtx.errors import ConfigError


@dataclass
class Segment:
    """One tokenized side of a pair, specials included (lists, unpadded)."""

    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]  # character span of each token in its text; (0, 0) for specials

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """Right-padded int64 arrays for a list of segments, the layout the graphs take."""

    input_ids: np.ndarray  # (B, S)
    attention_mask: np.ndarray  # (B, S)
    token_type_ids: np.ndarray  # (B, S)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "token_type_ids": self.token_type_ids}


class PairSegmenter:
    """Tokenize questions and passages into the two segments, with the coupled model's truncation."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_question_len: int, max_passage_len: int, doc_stride: int):
        if not tokenizer.is_fast:
            raise ConfigError("dtx needs a fast (Rust) tokenizer for offsets; save the model with tokenizer.json")
        self.tokenizer = tokenizer
        self.max_question_len = max_question_len
        self.max_passage_len = max_passage_len
        self.doc_stride = doc_stride
        probe = tokenizer("a", "b", return_token_type_ids=True)
        seq = probe.sequence_ids()
        ids, types = probe["input_ids"], probe.get("token_type_ids") or [0] * len(probe["input_ids"])
        first_q, last_q = seq.index(0), len(seq) - 1 - seq[::-1].index(0)
        first_p, last_p = seq.index(1), len(seq) - 1 - seq[::-1].index(1)
        # specials: prefix + q + middle + p + suffix; the cut falls after middle's first token
        self.q_prefix = ids[:first_q]
        self.q_suffix = ids[last_q + 1 : last_q + 2]
        self.p_prefix = ids[last_q + 2 : first_p]
        self.p_suffix = ids[last_p + 1 :]
        self.question_type, self.passage_type = types[first_q], types[first_p]
        self.question_budget = max_question_len - len(self.q_prefix) - len(self.q_suffix)
        self.passage_budget = max_passage_len - len(self.p_prefix) - len(self.p_suffix)
        if self.doc_stride >= self.passage_budget:
            raise ConfigError(
                f"--doc-stride {doc_stride} does not fit the {self.passage_budget} passage tokens of a {max_passage_len}-token passage window; "
                f"pass --doc-stride {max(0, self.passage_budget - 1)} or less, or longer windows (--max-len)"
            )

    def _segment(self, ids: list[int], offsets: list[tuple[int, int]], prefix: list[int], suffix: list[int], type_id: int) -> Segment:
        full = prefix + ids + suffix
        spans = [(0, 0)] * len(prefix) + offsets + [(0, 0)] * len(suffix)
        return Segment(full, [type_id] * len(full), spans)

    def from_ids(self, ids: list[int], side: str) -> Segment:
        """Wrap already-tokenized text (no specials) as the "question" or "passage" segment."""
        if side == "question":
            return self._segment(ids, [(0, 0)] * len(ids), self.q_prefix, self.q_suffix, self.question_type)
        return self._segment(ids, [(0, 0)] * len(ids), self.p_prefix, self.p_suffix, self.passage_type)

    @property
    def special_tokens(self) -> tuple[int, int]:
        """Specials a (question, passage) segment carries: (question, passage)."""
        return len(self.q_prefix) + len(self.q_suffix), len(self.p_prefix) + len(self.p_suffix)

    def _tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    def question(self, text: str) -> Segment:
        """`[CLS] q [SEP]`, the question cut to `max_question_len` tokens (specials included)."""
        ids, offsets = self._tokens(text)
        ids, offsets = ids[: self.question_budget], offsets[: self.question_budget]
        return self._segment(ids, offsets, self.q_prefix, self.q_suffix, self.question_type)

    def passage(self, text: str) -> list[Segment]:
        """`p [SEP]` windows of at most `max_passage_len` tokens, consecutive windows sharing `doc_stride`."""
        ids, offsets = self._tokens(text)
        step = self.passage_budget - self.doc_stride
        windows, start = [], 0
        while True:
            end = start + self.passage_budget
            windows.append(self._segment(ids[start:end], offsets[start:end], self.p_prefix, self.p_suffix, self.passage_type))
            if end >= len(ids):
                return windows
            start += step

    def pad(self, segments: list[Segment], length: int | None = None) -> Batch:
        """Right-pad segments to `length` (default: the longest) with the tokenizer's pad id."""
        length = length or max(len(s) for s in segments)
        if any(len(s) > length for s in segments):
            raise ConfigError(f"a segment of {max(len(s) for s in segments)} tokens does not fit the requested length {length}")
        ids = np.full((len(segments), length), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(segments), length), dtype=np.int64)
        types = np.zeros((len(segments), length), dtype=np.int64)
        for row, s in enumerate(segments):
            ids[row, : len(s)], mask[row, : len(s)], types[row, : len(s)] = s.input_ids, 1, s.token_type_ids
        return Batch(ids, mask, types)


def qa_window_lengths(max_len: int) -> tuple[int, int]:
    """(question, passage) tokens of a QA window of `max_len`: the question gets at most 64."""
    q = min(64, max_len // 3)
    return q, max_len - q
