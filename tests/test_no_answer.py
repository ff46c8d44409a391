"""The calibrated no-answer threshold: chosen exactly, recorded in the checkpoint, carried by export and engine,
and answered by in `dtx eval`, `dtx eval-store` and the query pipeline (the server's /v1/answer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dtx.cli import main
from dtx.eval.no_answer import best_threshold
from dtx.model.no_answer import NoAnswer
from helpers import texts


def _f1_at(t: float, margins: np.ndarray, answered: np.ndarray, declined: np.ndarray) -> float:
    return float(np.where(margins > t, answered, declined).mean())


@pytest.mark.parametrize("seed", range(6))
def test_best_threshold_is_the_best_decision(seed):
    """Against every threshold that makes a different decision (each margin, just above and below it)."""
    rng = np.random.default_rng(seed)
    n = 80
    margins = np.round(rng.normal(0, 3, n), 1)  # rounded: equal margins must be answered together
    declined = (rng.random(n) < 0.4).astype(float)
    answered = np.where(declined == 1, 0.0, rng.random(n))
    t, best = best_threshold(margins, answered, declined)
    tries = np.concatenate([margins, margins - 1e-6, margins + 1e-6, [-1e9, 1e9]])
    brute = max(_f1_at(x, margins, answered, declined) for x in tries)
    assert best == pytest.approx(brute, abs=1e-12)
    assert _f1_at(t, margins, answered, declined) == pytest.approx(best, abs=1e-12)  # the threshold returned gives that score
    assert best >= _f1_at(0.0, margins, answered, declined) - 1e-12


def test_ties_go_to_zero_and_unread_questions_stay_declined():
    # answering either question changes nothing (answered = declined): 0, the uncalibrated rule, is kept
    t, best = best_threshold(np.array([-3.0, 3.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    assert t == 0.0 and best == 0.5
    # a question nothing was read for (margin -inf) has no answer to give; the threshold stays finite
    # (declining all, or answering both read questions, score 2/3: the threshold nearest 0 that does the latter)
    t, best = best_threshold(np.array([-np.inf, 1.0, 2.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0]))
    assert t == 0.0 and best == pytest.approx(2 / 3)
    assert best_threshold(np.array([]), np.array([]), np.array([]))[0] == 0.0


def test_record_round_trip_and_uncalibrated_default():
    na = NoAnswer({"retrieved": {"decoupled": 1.5, "coupled": -0.25}}, 20, 30, 400, {"retrieved": {"decoupled": {"at_0": 10.0, "calibrated": 12.0}}})
    assert NoAnswer.from_dict(json.loads(json.dumps(na.to_dict()))) == na
    assert na.threshold("retrieved", "decoupled") == 1.5 and na.threshold("paragraph", "decoupled") == 0.0
    assert NoAnswer.from_dict(None).threshold("retrieved", "coupled") == 0.0 and not NoAnswer.from_dict(None).calibrated


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    """A Disfl-QA-shaped task file: 120 paragraphs, a question each, a third unanswerable."""
    passages = texts(5, 120, 12, 30)
    examples = []
    for i, p in enumerate(passages):
        words = p.split()
        examples.append({"input": f"{' '.join(words[:6])} ? \ncontext: {p}", "target": "unknown" if i % 3 == 0 else " ".join(words[5:7])})
    path = tmp_path_factory.mktemp("task") / "task.json"
    path.write_text(json.dumps({"name": "disfl_qa", "examples": examples}))
    return path


def test_calibrate_records_and_every_reader_answers_by_it(model_dir, task_data, tmp_path):
    """`dtx calibrate` writes thresholds that reproduce its selection F1 by `dtx eval`'s rule; export, engine and the
    store's pipeline carry them, and the pipeline answers only above its threshold."""
    from dtx.data.pairs import read_pairs
    from dtx.data.qa import qa_features
    from dtx.engines.build import BuildOptions, build_engine
    from dtx.eval.evaluate import evaluate_model, open_model
    from dtx.eval.predict import qa_path_answers
    from dtx.eval.squad import squad_v2
    from dtx.export.exporter import export_checkpoint
    from dtx.model.checkpoint import read_meta
    from dtx.model.decouple import decouple
    from dtx.query import QueryPipeline
    from dtx.query.open_domain import open_domain_eval
    from dtx.train.calibrate import selection_and_pool

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, compress=2, max_question_len=16, max_passage_len=32)
    uncalibrated = CliRunner().invoke(main, ["calibrate", str(ckpt.path), "--data", str(task_data), "--select-percent", "30", "-k", "5"])
    assert uncalibrated.exit_code == 0, uncalibrated.output
    assert "behind BM25 top-5" in uncalibrated.output and "given its paragraph" in uncalibrated.output
    na = read_meta(ckpt.path).no_answer
    questions, pool = selection_and_pool(read_pairs(task_data), 10, 30, 1000, 0, "t")
    assert na.k == 5 and na.questions == len(questions) > 10 and na.paragraphs == len(pool)
    for condition in ("paragraph", "retrieved"):
        for path in ("decoupled", "coupled"):
            f = na.selection_f1[condition][path]
            assert f["calibrated"] >= f["at_0"] - 1e-9 and np.isfinite(na.threshold(condition, path))
    # the paragraph threshold reproduces its recorded F1 when `dtx eval`'s reader answers by it
    runner, seg, *_ = open_model(ckpt.path)
    features = qa_features(questions, seg, "t")
    for path in ("decoupled", "coupled"):
        answers = qa_path_answers(runner, seg, questions, features, path, null_threshold=na.threshold("paragraph", path))
        assert squad_v2([q.answers for q in questions], answers)["f1"] == pytest.approx(na.selection_f1["paragraph"][path]["calibrated"], abs=1e-6)
    # carried: checkpoint -> export -> engine -> store's pipeline; dtx eval reports what it answered by
    export_checkpoint(ckpt.path, tmp_path / "onnx", progress=False)
    build_engine(tmp_path / "onnx", tmp_path / "engine", BuildOptions(drift_pairs=8), progress=False)
    report = evaluate_model(tmp_path / "engine", task_data, limit=20, progress=False)
    assert report["no_answer_threshold"] == {p: na.threshold("paragraph", p) for p in ("decoupled", "coupled")}
    result = CliRunner().invoke(main, ["index", str(task_data), "--engine", str(tmp_path / "engine"), "-o", str(tmp_path / "store"), "--split", "dev"])
    assert result.exit_code == 0, result.output
    with QueryPipeline.open(tmp_path / "store") as pipe:
        assert pipe.no_answer == na
        results = [pipe.answer(q.question, 5) for q in questions[:12]]
        for r in results:
            top = r.candidates[0]
            chosen = pipe.answer_of(r)
            assert (chosen is top) == (top.answer is not None and top.score > na.threshold("retrieved", "decoupled"))
        pipe.no_answer = NoAnswer({"retrieved": {"decoupled": -1e9}})
        assert all(pipe.answer_of(r) is r.candidates[0] for r in results if r.candidates[0].answer is not None)
        pipe.no_answer = NoAnswer({"retrieved": {"decoupled": 1e9}})
        assert all(pipe.answer_of(r) is None for r in results)
    store_report = open_domain_eval(tmp_path / "store", task_data, k=5, progress=False, teacher=False)
    assert store_report["no_answer_threshold"] == {"student": na.threshold("retrieved", "decoupled"), "teacher": na.threshold("retrieved", "coupled")}


def test_calibrate_refuses_what_it_cannot_calibrate(model_dir, task_data, tmp_path):
    from dtx.model.decouple import decouple

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, compress=2, max_question_len=16, max_passage_len=32)
    pair = decouple(model_dir("bert", "pair"), tmp_path / "pair", split=2, compress=2, task="pair")
    for args, needle in (
        ([str(pair.path), "--data", str(task_data)], "pair classifier"),
        ([str(ckpt.path), "--data", str(task_data), "--select-percent", "0"], "--select-percent"),
    ):
        r = CliRunner().invoke(main, ["calibrate", *args])
        assert r.exit_code != 0 and needle in r.output and "Traceback" not in r.output, r.output
    assert not read_meta_has_no_answer(ckpt.path)


def read_meta_has_no_answer(path) -> bool:
    """Whether a refused calibration left the checkpoint as it was (no record written)."""
    return "no_answer" in json.loads((path / "decoupled.json").read_text())
