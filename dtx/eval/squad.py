"""The SQuAD 2.0 metric: exact match and F1 after normalisation, best over gold answers.

Same rules as the official evaluation script: lower-case, strip punctuation, the articles
a/an/the and extra whitespace; an unanswerable question's only gold answer is "" (so predicting
no answer scores 1 on it and any span scores 0); HasAns and NoAns are reported apart.
"""

from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def f1(gold: str, pred: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:
        return float(g == p)  # no-answer on either side: right only if both are empty
    common = sum((collections.Counter(g) & collections.Counter(p)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def question_score(gold: list[str], pred: str) -> tuple[bool, float, float]:
    """(answerable, EM, F1) of one prediction against one question's gold answers, as SQuAD 2.0 scores it:
    blank gold answers are dropped, and a question left with none has "" as its only answer."""
    gold = [g for g in gold if normalize_answer(g)] or [""]
    return gold != [""], max(exact(g, pred) for g in gold), max(f1(g, pred) for g in gold)


def squad_v2(golds: list[list[str]], preds: list[str]) -> dict:
    """Percent EM / F1 overall, on answerable (HasAns) and unanswerable (NoAns) questions, and how often the
    reader said "no answer" (overall, and on answerable questions, where every such answer is a miss): the
    figure that tells a reader which abstains too often from one which finds the wrong span."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold answer lists but {len(preds)} predictions")
    rows = []
    for gold, pred in zip(golds, preds):
        rows.append((*question_score(gold, pred), not normalize_answer(pred)))

    def part(sel) -> tuple[float, float, float, int]:
        sel = list(sel)
        n = len(sel)
        if not n:
            return float("nan"), float("nan"), float("nan"), 0
        return 100 * sum(r[1] for r in sel) / n, 100 * sum(r[2] for r in sel) / n, 100 * sum(r[3] for r in sel) / n, n

    out = {}
    for name, sel in (("", rows), ("HasAns_", [r for r in rows if r[0]]), ("NoAns_", [r for r in rows if not r[0]])):
        em, f, abstained, n = part(sel)
        out.update({f"{name}exact": em, f"{name}f1": f, f"{name}total": n})
        if name != "NoAns_":  # on unanswerable questions it is NoAns_exact
            out[f"{name}no_answer_rate"] = abstained
    return out
