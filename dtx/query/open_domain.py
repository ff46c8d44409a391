"""End to end: retrieve, then read. The student reads cached passages; the teacher reads the same ones.

For every held-out question, BM25 returns the top-k passages of the store; the student answers
from their cached representations (the deployed path: only the question goes through the input
component), and the coupled teacher reads the same windows, question and passage together. Both
are scored against the gold answers (SQuAD 2.0 EM / F1: a question is answered with the best span
over all candidates where it beats "no answer" by more than the reader's own calibrated threshold,
dtx.eval.no_answer) and timed per query, so one table shows what decoupling costs in accuracy and
saves in time on the same retrieval.

The report carries `candidates_digest`, a hash of every question's candidate ids: two reports with the
same digest read exactly the same candidates, so a student measured with `teacher=False` (the coupled
teacher is the slow half of the run) compares with a teacher row measured before over the same
passages, data and k.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dtx.data.pairs import Pair, read_pairs
from dtx.errors import DtxError
from dtx.eval.squad import squad_v2
from dtx.store.corpus import content_id
from dtx.data.splits import dev_subset, split_by_passage
from dtx.model.no_answer import READERS
from dtx.task import Task


class _Answers:
    """Each reader's answer texts ("" = no answer) at its calibrated threshold (`at`) and at 0 (`at_0`)."""

    def __init__(self) -> None:
        self.at: dict[str, list[str]] = {who: [] for who in READERS}
        self.at_0: dict[str, list[str]] = {who: [] for who in READERS}

    def add(self, who: str, pipe, result) -> None:
        for answers, threshold in ((self.at, None), (self.at_0, 0.0)):
            chosen = pipe.answer_of(result, READERS[who], threshold)
            answers[who].append(chosen.answer if chosen is not None else "")

    def none(self) -> None:
        """A question with nothing to read: "no answer" from both readers."""
        for answers in (self.at, self.at_0):
            for who in READERS:
                answers[who].append("")


def _latency(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(np.mean(ms))}


class _Digest:
    """A running hash of each question's candidate ids (sorted: the set, not the order the reader ranked)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, ids: list[str]) -> None:
        self._hash.update((",".join(sorted(ids)) + "\n").encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def held_out_questions(data: str | Path, limit: int | None) -> list[Pair]:
    """The questions both the evaluation and its candidates' digest ask: the held-out split's first `limit`."""
    return dev_subset(split_by_passage(read_pairs(data))[1], limit)


def candidates_digest(store: str | Path, data: str | Path, k: int = 20, limit: int | None = None) -> str:
    """The `candidates_digest` an `open_domain_eval` over `store` would report, from BM25 alone (no model runs):
    how a report made before digests existed is matched to a newer one."""
    from dtx.store.passage_store import NothingToSearch, PassageStore

    index, digest = PassageStore.open(store), _Digest()
    for pair in held_out_questions(data, limit):
        try:
            digest.add([pid for pid, _ in index.search(pair.question, k)])
        except NothingToSearch:  # as open_domain_eval counts it: no candidates
            digest.add([])
    return digest.hexdigest()


def open_domain_eval(store: str | Path, data: str | Path, k: int = 20, limit: int | None = None, engine_dir: str | Path | None = None, threads: int | None = None, progress: bool = True, teacher: bool = True) -> dict:
    """Student (cached passages) and, unless `teacher` is False, the coupled teacher (same candidates) on the
    held-out questions of `data`."""
    from dtx.query import QueryPipeline
    from dtx.query.pipeline import NothingRetrieved
    from dtx.store.passage_store import NothingToSearch

    if k < 1:
        raise DtxError(f"-k {k}: read at least one candidate per question")
    pairs = held_out_questions(data, limit)
    if not pairs or all(not p.answers for p in pairs):
        raise DtxError(f"{data} has no held-out questions with answers to score; pass a QA data set (SQuAD 2.0 style)")
    answers = _Answers()
    times: dict[str, list[float]] = {"student": [], "teacher": []}
    gold_retrieved = nothing_retrieved = 0
    digest = _Digest()
    with QueryPipeline.open(store, engine_dir, threads) as pipe:
        if pipe.task != Task.QA:
            raise DtxError(f"the model behind {store} is a pair classifier; open-domain QA needs a QA reader")
        for pair in tqdm(pairs, desc="retrieve + read", unit="question", disable=not progress):
            t = time.perf_counter()
            try:
                student = pipe.answer(pair.question, k)
            except (NothingRetrieved, NothingToSearch):  # nothing to read: both answer "no answer", and it is counted
                nothing_retrieved += 1
                answers.none()
                digest.add([])
                continue
            times["student"].append((time.perf_counter() - t) * 1e3)
            ids = [c.id for c in student.candidates]
            digest.add(ids)
            answers.add("student", pipe, student)
            if teacher:
                t = time.perf_counter()
                coupled = pipe.rerank_coupled(pair.question, ids)
                times["teacher"].append((time.perf_counter() - t) * 1e3 + student.timings_ms["retrieve"])
                answers.add("teacher", pipe, coupled)
            gold_retrieved += content_id(pair.passage) in ids
        teacher_of = _teacher_of(pipe)
        thresholds = {who: pipe.no_answer.threshold("retrieved", path) for who, path in READERS.items()}
    golds = [p.answers for p in pairs]
    same = float(np.mean([a == b for a, b in zip(answers.at["student"], answers.at["teacher"])])) if teacher else None
    return {
        "store": str(store),
        "data": str(data),
        "questions": len(pairs),
        "limit": limit,  # --limit: the first N held-out questions (None: all)
        "candidates": k,
        "gold_passage_retrieved": gold_retrieved / len(pairs),  # by content id: a store indexed from the same data file
        "nothing_retrieved": nothing_retrieved,  # questions BM25 found no candidate for (both paths answer "no answer")
        "student": {**squad_v2(golds, answers.at["student"]), **_latency(times["student"])},
        "teacher": {**squad_v2(golds, answers.at["teacher"]), **_latency(times["teacher"])} if teacher else None,
        "agreement": same,
        "no_answer_threshold": thresholds,  # each reader's calibrated threshold (0: uncalibrated)
        "at_threshold_0": {who: squad_v2(golds, answers.at_0[who]) if who == "student" or teacher else None for who in READERS},  # what calibrating changed
        "candidates_digest": digest.hexdigest(),  # equal digests: the same candidates for every question
        **teacher_of,  # whose teacher row this is (or would be): equal digests are not enough when teachers differ
    }


def _teacher_of(pipe) -> dict:
    """The teacher behind the store's engine - the checkpoint's `source` and its teacher weights' sha256 - so a
    student-only report is matched with the teacher report of its own teacher; {} where the checkpoint the
    export was made from is not on this machine, or now holds other weights (its teacher may be another)."""
    from dtx.model.checkpoint import META_FILE, read_meta

    ref = pipe.engine.export.checkpoint
    if not (ref.path / META_FILE).is_file():
        return {}
    meta = read_meta(ref.path)
    if meta.weights_sha256 != ref.weights_sha256:
        return {}
    return {"teacher_source": meta.source, "teacher_sha256": dict(meta.teacher_sha256)}
