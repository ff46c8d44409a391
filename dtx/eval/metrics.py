"""Pair-classification metrics (accuracy and macro-F1), shared by training's dev scoring and `dtx eval`,
and the one rule for which class is "relevant" when pairs are ranked (by `dtx eval`'s MRR and at query time).

QA metrics (SQuAD 2.0 EM/F1) are in squad.py.
"""

from __future__ import annotations

import numpy as np

from dtx.errors import DtxError

POSITIVE_LABELS = ("true", "supports", "entailment", "relevant", "positive", "yes", "1")


def positive_index(labels: list[str], chosen: str | None = None) -> int:
    """Which class's log-probability ranks candidates: `chosen`, else a conventional positive name, else the last."""
    if chosen is not None:
        if chosen in labels:
            return labels.index(chosen)
        if chosen.isdigit() and int(chosen) < max(len(labels), 1):
            return int(chosen)
        raise DtxError(f"--label {chosen!r} is not one of the model's labels {labels}")
    for i, name in enumerate(labels):
        if name.lower() in POSITIVE_LABELS:
            return i
    return max(len(labels) - 1, 0)


def pair_metrics(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> dict:
    """Accuracy and macro-F1 over `n_labels` classes (a class never predicted nor present scores F1 0, as
    scikit-learn's zero_division=0 does): macro-F1 shows a classifier that ignores a rare label."""
    f1s = []
    for c in range(n_labels):
        tp = int(((pred == c) & (gold == c)).sum())
        fp, fn = int(((pred == c) & (gold != c)).sum()), int(((pred != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((pred == gold).mean()), "macro_f1": float(np.mean(f1s)), "pairs": int(len(gold))}
