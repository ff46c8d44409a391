"""Turn head outputs into predictions: the best answer span (SQuAD 2.0 style) or a label."""

from __future__ import annotations

import numpy as np

NO_ANSWER = -1  # the token index meaning "no answer" (SQuAD 2.0: the span sits on [CLS] in training)
NO_SPAN = (NO_ANSWER, NO_ANSWER)


def top_span(start: np.ndarray, end: np.ndarray, allowed: np.ndarray, max_answer_len: int = 30) -> tuple[tuple[int, int], float]:
    """Best (start, end) slot pair within `allowed` slots, end >= start and at most `max_answer_len` long, and its score."""
    s = np.where(allowed, start, -np.inf)
    e = np.where(allowed, end, -np.inf)
    scores = s[:, None] + e[None, :]  # (S, S)
    n = len(start)
    i, j = np.indices((n, n))
    scores = np.where((j >= i) & (j - i < max_answer_len), scores, -np.inf)
    flat = int(np.argmax(scores))
    span = (flat // n, flat % n)
    return span, float(scores[span])


def best_span(start: np.ndarray, end: np.ndarray, allowed: np.ndarray, max_answer_len: int = 30) -> tuple[tuple[int, int], float, float]:
    """Best (start, end) slot pair within `allowed` slots, its score, and the no-answer score.

    start, end: (S,) logits of one pair; allowed: (S,) bool, the real passage slots. The no-answer
    score is start[0] + end[0] (slot 0 is [CLS]); the span wins only if it scores higher.
    """
    span, best = top_span(start, end, allowed, max_answer_len)
    null = float(start[0] + end[0])
    return (span if best > null else NO_SPAN), best, null


def predictions(outputs: dict[str, np.ndarray], passage_slots: np.ndarray) -> list:
    """One prediction per row: a (start, end) slot pair for QA, a label index for pair tasks."""
    if "logits" in outputs:
        return [int(i) for i in outputs["logits"].argmax(-1)]
    return [best_span(s, e, a)[0] for s, e, a in zip(outputs["start_logits"], outputs["end_logits"], passage_slots)]


def decoupled_passage_slots(q_mask: np.ndarray, p_mask: np.ndarray) -> np.ndarray:
    """(b, lq + lp) bool: the passage slots of cross-component outputs (bq = 1 or b)."""
    b = p_mask.shape[0]
    q = np.zeros((b, q_mask.shape[1]), bool)
    return np.concatenate([q, p_mask.astype(bool)], axis=1)


def coupled_passage_slots(q_mask: np.ndarray, pair_mask: np.ndarray) -> np.ndarray:
    """(b, S) bool: the passage slots of coupled outputs, which follow each row's real question tokens."""
    b, width = pair_mask.shape
    nq = q_mask.sum(-1)[np.arange(b) % q_mask.shape[0]]  # (b,)
    return (np.arange(width)[None, :] >= nq[:, None]) & pair_mask.astype(bool)
