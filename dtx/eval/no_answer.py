"""Choosing the no-answer thresholds (dtx.model.no_answer) on held-out questions, by exact F1.

At threshold 0 the student behind BM25 top-20 answers where its teacher declines: it reads paragraphs
that do not hold the answer, and its best span still edges out [CLS] (Disfl-QA, short recipe: NoAns
22.5 against the teacher's 64.5). SQuAD 2.0 practice chooses the threshold on held-out questions; dtx
chooses it on the training run's selection split (passages neither trained on nor reported), for each
reader alone and in each condition, reading exactly as that condition's reader does:

- `paragraph`: each question with its own paragraph, by `dtx eval`'s rule (best span over the
  paragraph's windows against their smallest no-answer score: dtx.eval.predict.qa_margins);
- `retrieved`: BM25's top k among the selection and training paragraphs (never dev's), by the query
  pipeline's rule (each window's span minus its own no-answer score; the best window answers).

The threshold maximises the selection questions' F1 over every distinct decision (`best_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from dtx.data.pairs import Pair
from dtx.eval.squad import question_score
from dtx.model.no_answer import PATHS, RETRIEVED_K, NoAnswer


def best_threshold(margins: np.ndarray, answered: np.ndarray, declined: np.ndarray) -> tuple[float, float]:
    """(threshold, mean score) maximising the mean of `answered[i]` where margins[i] > threshold, else `declined[i]`.

    Every distinct decision is tried: answering none, and answering exactly the questions above each
    gap of the sorted margins (the threshold set at the gap's midpoint, so the choice does not rest on
    one question's exact score). Ties go to the threshold nearest 0, the uncalibrated rule.
    """
    margins, answered, declined = (np.asarray(a, dtype=np.float64) for a in (margins, answered, declined))
    if len(margins) == 0:
        return 0.0, float("nan")
    finite = margins[np.isfinite(margins)]
    floor = finite.min() - 2.0 if len(finite) else -2.0
    margins = np.where(np.isfinite(margins), margins, floor)  # nothing to answer with: below every real margin, never answered
    order = np.argsort(-margins, kind="stable")
    m, gain = margins[order], (answered - declined)[order]
    base = declined.sum()
    # answering the top j questions (j = 0..n) scores base + the sum of their gains
    totals = base + np.concatenate([[0.0], np.cumsum(gain)])
    cut = np.concatenate([[m[0] + 1.0], (m[:-1] + m[1:]) / 2, [m[-1] - 1.0]])  # a threshold that answers exactly the top j
    distinct = np.concatenate([[True], m[:-1] > m[1:], [True]])  # equal margins are answered together
    candidates = np.flatnonzero(distinct)
    best = totals[candidates].max()
    winners = candidates[np.isclose(totals[candidates], best, rtol=0, atol=1e-9)]
    j = winners[np.argmin(np.abs(cut[winners]))]
    return float(cut[j]), float(best / len(margins))


@dataclass
class Read:
    """One question's best answer by one reader: its text and its margin (span score minus no-answer score)."""

    answer: str
    margin: float


def _scored(reads: list[Read], golds: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(margins, F1 if answered, F1 if declined) per question, as SQuAD 2.0 scores them."""
    answered, declined = [], []
    for read, gold in zip(reads, golds):
        answerable, _, score = question_score(gold, read.answer)
        answered.append(score)
        declined.append(float(not answerable))
    return np.array([r.margin for r in reads]), np.array(answered), np.array(declined)


def choose(reads: list[Read], golds: list[list[str]]) -> tuple[float, dict[str, float]]:
    """The threshold for these reads, and the F1 (percent) at 0 and at it."""
    margins, answered, declined = _scored(reads, golds)
    threshold, best = best_threshold(margins, answered, declined)
    at_0 = float(np.where(margins > 0, answered, declined).mean())
    return threshold, {"at_0": 100 * at_0, "calibrated": 100 * best}


def paragraph_reads(runner, seg, pairs: list[Pair], path: str, where: str, batch_size: int = 32) -> list[Read]:
    """Each question against its own paragraph, by `dtx eval`'s rule (dtx.eval.predict.qa_margins)."""
    from dtx.data.qa import qa_features
    from dtx.eval.predict import qa_margins, run_qa

    features = qa_features(pairs, seg, where)
    return [Read(a, m) for a, m in qa_margins(pairs, features, run_qa(runner, seg, features, path, batch_size))]


def retrieved_reads(runner, seg, questions: list[Pair], pool: list[str], k: int, paths: tuple[str, ...] = PATHS, batch_size: int = 32, progress: bool = False) -> dict[str, list[Read]]:
    """Each question against BM25's top `k` of `pool`, by the query pipeline's rule, along every path in `paths`.

    A window's candidate scores its best span minus its own no-answer score (QueryPipeline._row_candidate);
    the question's answer is the best window over its candidates. A question BM25 finds nothing for
    answers "no answer" at any threshold (margin -inf), as eval-store counts it.
    """
    from dtx.data.negatives import BM25
    from dtx.data.qa import qa_features
    from dtx.eval.predict import run_qa, window_answer

    index = BM25(pool)
    reads: dict[str, list[Read]] = {path: [] for path in paths}
    for question in tqdm(questions, desc=f"no-answer threshold, BM25 top-{k}", unit="question", disable=not progress):
        hits = index.top(question.question, k)
        pairs = [Pair(question.question, pool[i]) for i in hits]
        features = qa_features(pairs, seg, "calibration") if pairs else []
        for path in paths:
            best = Read("", -np.inf)
            for f, s in zip(features, run_qa(runner, seg, features, path, batch_size) if features else []):
                if s.span[0] >= 0 and s.score - s.null > best.margin:
                    best = Read(window_answer(pairs[f.example], f, s), s.score - s.null)
            reads[path].append(best)
    return reads


def calibrate(runner, seg, select: list[Pair], pool: list[str], where: str, k: int = RETRIEVED_K, batch_size: int = 32, progress: bool = False) -> NoAnswer:
    """Thresholds for both paths in both conditions, chosen on the selection questions `select`.

    `pool` is the paragraphs BM25 retrieves from (the selection and training paragraphs, never dev's);
    `where` names the data in errors."""
    asked = [p for p in select if p.question.strip()]
    golds = [p.answers for p in asked]
    reads = {"paragraph": {path: paragraph_reads(runner, seg, asked, path, where, batch_size) for path in PATHS},
             "retrieved": retrieved_reads(runner, seg, asked, pool, k, PATHS, batch_size, progress)}  # fmt: skip
    thresholds: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for condition, by_path in reads.items():
        for path, rows in by_path.items():
            t, f = choose(rows, golds)
            thresholds.setdefault(condition, {})[path] = t
            scores.setdefault(condition, {})[path] = f
    return NoAnswer(thresholds, k, len(asked), len(pool), scores)
