"""Predictions of the student (decoupled path) and the teacher (coupled path) through any runner.

A checkpoint (PyTorch), an export (its ONNX graphs) and an engine all expose the same `Runner`,
so one function scores them all, and the teacher always comes with the student: every dtx
artifact carries the coupled model it was distilled from.

QA decoding follows SQuAD 2.0 practice: per window, the best span of at most `max_answer_len`
tokens over real passage tokens, and the no-answer score start[CLS] + end[CLS]; per question, the
best span over its windows against the smallest no-answer score, answered only when the span
wins by more than `null_threshold` (0, or the reader's calibrated one: dtx.eval.no_answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from dtx.data.pairs import Pair
from dtx.data.qa import QAFeature
from dtx.model.decode import top_span
from dtx.model.no_answer import PATHS
from dtx.model.samples import PairBatch
from dtx.model.segments import PairSegmenter



@dataclass
class WindowScore:
    span: tuple[int, int]  # passage-segment token indices, or (-1, -1)
    score: float  # best span score
    null: float  # no-answer score


def _window_scores(start: np.ndarray, end: np.ndarray, first: int, feature: QAFeature, max_answer_len: int) -> WindowScore:
    """Scores of one window whose passage token j sits at slot `first + j` of the output."""
    n = len(feature.passage)
    allowed = np.array([b > a for a, b in feature.passage.offsets])  # specials have (0, 0) offsets
    null = float(start[0] + end[0])
    if not allowed.any():
        return WindowScore((-1, -1), -np.inf, null)
    span, score = top_span(start[first : first + n], end[first : first + n], allowed, max_answer_len)
    return WindowScore(span, score, null)


def run_qa(runner, segmenter: PairSegmenter, features: list[QAFeature], path: str, batch_size: int = 32, max_answer_len: int = 30, progress: bool = False) -> list[WindowScore]:
    """Per-window scores along `path` ("decoupled": student, "coupled": teacher)."""
    out: list[WindowScore] = []
    for i in tqdm(range(0, len(features), batch_size), desc=path, unit="batch", disable=not progress):
        chunk = features[i : i + batch_size]
        q = segmenter.pad([f.question for f in chunk])
        p = segmenter.pad([f.passage for f in chunk])
        if path == "decoupled":
            res = runner.decoupled(q, p)
            firsts = [q.input_ids.shape[1]] * len(chunk)
        else:
            res = runner.coupled(PairBatch(q, p, segmenter.tokenizer.pad_token_id).coupled())
            firsts = [len(f.question) for f in chunk]
        for row, f in enumerate(chunk):
            out.append(_window_scores(res["start_logits"][row], res["end_logits"][row], firsts[row], f, max_answer_len))
    return out


def window_answer(pair: Pair, feature: QAFeature, score: WindowScore) -> str:
    """The text of a window's best span in its pair's passage."""
    a, b = score.span
    return pair.passage[feature.passage.offsets[a][0] : feature.passage.offsets[b][1]]


def qa_margins(pairs: list[Pair], features: list[QAFeature], scores: list[WindowScore]) -> list[tuple[str, float]]:
    """Per pair, its best span's text over its windows and that span's score minus the smallest no-answer
    score of its windows (("", -inf) where no window has a span): what a threshold decides on."""
    best: dict[int, tuple[float, QAFeature, WindowScore]] = {}
    null: dict[int, float] = {}
    for f, s in zip(features, scores):
        null[f.example] = min(null.get(f.example, np.inf), s.null)
        if s.span[0] >= 0 and (f.example not in best or s.score > best[f.example][0]):
            best[f.example] = (s.score, f, s)
    out = []
    for n, pair in enumerate(pairs):
        if n not in best:
            out.append(("", -np.inf))
            continue
        score, f, s = best[n]
        out.append((window_answer(pair, f, s), score - null[n]))
    return out


def qa_answers(pairs: list[Pair], features: list[QAFeature], scores: list[WindowScore], null_threshold: float = 0.0) -> list[str]:
    """One answer text per pair ("" = no answer): its best span where it wins by more than `null_threshold`."""
    return [text if margin > null_threshold else "" for text, margin in qa_margins(pairs, features, scores)]


def qa_path_answers(runner, segmenter: PairSegmenter, pairs: list[Pair], features: list[QAFeature], path: str, batch_size: int = 32, progress: bool = False, null_threshold: float = 0.0) -> list[str]:
    """One answer per question along `path` ("decoupled": student, "coupled": teacher)."""
    return qa_answers(pairs, features, run_qa(runner, segmenter, features, path, batch_size, progress=progress), null_threshold)


def qa_compare(pairs: list[Pair], student: list[str], teacher: list[str]) -> dict:
    """SQuAD 2.0 scores of student and teacher answers, and how often they answer alike."""
    from dtx.eval.squad import normalize_answer, squad_v2

    golds = [p.answers for p in pairs]
    same = float(np.mean([normalize_answer(a) == normalize_answer(b) for a, b in zip(student, teacher)]))
    return {"student": squad_v2(golds, student), "teacher": squad_v2(golds, teacher), "agreement": same}


def qa_side_by_side(runner, segmenter: PairSegmenter, pairs: list[Pair], features: list[QAFeature], batch_size: int = 32, progress: bool = False, thresholds: dict[str, float] | None = None) -> dict:
    """SQuAD 2.0 scores of the student (decoupled path) and the teacher (coupled path), and how often they answer
    alike; each answers by its own no-answer threshold in `thresholds` (by path; 0 where absent)."""
    thresholds = thresholds or {}
    answers = {path: qa_path_answers(runner, segmenter, pairs, features, path, batch_size, progress, thresholds.get(path, 0.0)) for path in PATHS}
    return qa_compare(pairs, answers["decoupled"], answers["coupled"])


def run_pair(runner, segmenter: PairSegmenter, pairs: list[Pair], path: str, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """(N, labels) logits along `path`; the passage is its first window."""
    logits = []
    for i in tqdm(range(0, len(pairs), batch_size), desc=path, unit="batch", disable=not progress):
        chunk = pairs[i : i + batch_size]
        q = segmenter.pad([segmenter.question(x.question) for x in chunk])
        p = segmenter.pad([segmenter.passage(x.passage)[0] for x in chunk])
        res = runner.decoupled(q, p) if path == "decoupled" else runner.coupled(PairBatch(q, p, segmenter.tokenizer.pad_token_id).coupled())
        logits.append(res["logits"])
    return np.concatenate(logits)
