"""QA data, the SQuAD 2.0 metric, QA fine-tuning / distillation and `dtx eval` on tiny models."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dtx.cli import main
from dtx.data.pairs import read_pairs
from dtx.data.qa import NO_ANSWER, locate_answer, qa_features, token_span
from dtx.errors import DtxError
from dtx.eval.evaluate import evaluate_model, mrr_at_10
from dtx.eval.squad import f1, normalize_answer, question_score, squad_v2
from dtx.model.checkpoint import load_checkpoint
from dtx.model.decouple import decouple
from dtx.train.distill import DistillConfig, distill
from dtx.train.finetune import FinetuneConfig, finetune_qa
from dtx.train.losses import masked_mse
from tiny_models import WORDS


# -- the metric, against hand-checked cases ---------------------------------------------------
def test_normalisation_drops_case_punctuation_articles_whitespace():
    assert normalize_answer("  The  Eiffel-Tower, in  PARIS! ") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"


@pytest.mark.parametrize(
    "gold, pred, expected",
    [
        ("the cat sat", "cat sat", 1.0),  # article removed
        ("cat sat on the mat", "cat sat", 2 * (1.0 * 0.5) / 1.5),  # P = 2/2, R = 2/4
        ("cat", "dog", 0.0),
        ("", "", 1.0),  # no answer, none predicted
        ("", "cat", 0.0),  # no answer, a span predicted
        ("cat", "", 0.0),  # an answer, none predicted
        ("a b b c", "b b d", 2 * (2 / 3) * (2 / 3) / (4 / 3)),  # multiset overlap: P = 2/3, R = 2/3 (articles removed)
    ],
)
def test_f1_hand_cases(gold, pred, expected):
    assert f1(gold, pred) == pytest.approx(expected)


def test_squad_v2_splits_has_and_no_answer():
    golds = [["Paris", "the city of Paris"], ["42"], [], []]
    preds = ["city of paris", "41", "", "something"]
    r = squad_v2(golds, preds)
    assert r["HasAns_total"] == 2 and r["NoAns_total"] == 2 and r["total"] == 4
    assert r["HasAns_exact"] == pytest.approx(50.0) and r["NoAns_exact"] == pytest.approx(50.0)
    assert r["exact"] == pytest.approx(50.0)
    assert r["f1"] == pytest.approx(100 * (1 + 0 + 1 + 0) / 4)
    assert r["no_answer_rate"] == pytest.approx(25.0) and r["HasAns_no_answer_rate"] == pytest.approx(0.0)
    r = squad_v2([["42"], ["Paris"], []], [" ", "Paris", "."])  # blank and punctuation-only answers are "no answer"
    assert r["no_answer_rate"] == pytest.approx(100 * 2 / 3) and r["HasAns_no_answer_rate"] == pytest.approx(50.0)


def test_question_score_drops_blank_gold_answers():
    assert question_score(["", " . ", "Paris"], "paris") == (True, 1.0, 1.0)  # blank golds are not answers
    assert question_score(["", " ! "], "") == (False, 1.0, 1.0)  # only blanks: unanswerable, declining is right
    answerable, em, score = question_score(["the city of Paris"], "Paris city")
    assert answerable and em == 0.0 and score == pytest.approx(f1("the city of Paris", "Paris city"))


def test_mrr_at_10_by_hand():
    from dtx.data.pairs import Pair

    pairs = [Pair("q1", "a", "0", group="1"), Pair("q1", "b", "1", group="1"), Pair("q1", "c", "0", group="1"), Pair("q2", "d", "1", group="2"), Pair("q2", "e", "0", group="2")]
    logits = np.array([[0, 3.0], [0, 2.0], [0, 1.0], [0, 5.0], [0, 0.0]])  # q1: positive ranked 2nd; q2: 1st
    assert mrr_at_10(pairs, logits, ["0", "1"]) == pytest.approx((1 / 2 + 1) / 2)


# -- answers to token spans -------------------------------------------------------------------
def test_locate_answer_with_and_without_start():
    passage = "In 1466 , perhaps 40 , 000 people died ."
    s, e = locate_answer("40,000", passage)
    assert passage[s:e] == "40 , 000"
    assert locate_answer("people", passage, start=27) == (27, 33)
    assert locate_answer("people", passage, start=3) == (27, 33)  # a wrong start is searched for
    assert locate_answer("plague", passage) is None


def test_token_span_needs_the_whole_answer_in_the_window():
    offsets = [(0, 0), (0, 3), (4, 7), (8, 11), (0, 0)]
    assert token_span(offsets, (4, 11)) == (2, 3)
    assert token_span(offsets, (5, 6)) == (2, 2)
    assert token_span(offsets, (8, 20)) == (NO_ANSWER, NO_ANSWER)  # runs past the window


def test_features_map_answers_through_sliding_windows(model_dir):
    ckpt_dir = model_dir("bert", "qa")
    from tiny_models import load_tokenizer
    from dtx.model.segments import PairSegmenter

    seg = PairSegmenter(load_tokenizer(ckpt_dir), 16, 24, 8)
    rng = random.Random(0)
    words = [rng.choice(WORDS[10:]) for _ in range(60)]
    passage = " ".join(words)
    answer = " ".join(words[40:43])
    from dtx.data.pairs import Pair

    feats = qa_features([Pair("where is it", passage, None, [answer])], seg, "x")
    assert len(feats) > 2  # a sliding window with a stride
    hits = [f for f in feats if f.start != NO_ANSWER]
    assert hits, "some window holds the answer"
    for f in hits:
        o = f.passage.offsets
        assert passage[o[f.start][0] : o[f.end][1]] == answer
    assert any(f.start == NO_ANSWER for f in feats)  # windows without it point at [CLS]


# -- bad data: file and line (bad JSONL / empty files: tests/test_train_pair.py) ----------------
def test_answer_not_in_passage_names_the_example(model_dir, tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "ex-7", "question": "the cat", "passage": "the river is wide", "answers": ["mountain"]}\n')
    from tiny_models import load_tokenizer
    from dtx.model.segments import PairSegmenter

    seg = PairSegmenter(load_tokenizer(model_dir("bert", "qa")), 16, 24, 8)
    with pytest.raises(DtxError, match=r"qa\.jsonl: example ex-7: answer 'mountain' is not in its passage"):
        qa_features(read_pairs(path), seg, str(path))


def test_squad_json_reader(tmp_path):
    doc = {"data": [{"paragraphs": [{"context": "the cat sat on the mat", "qas": [
        {"id": "a", "question": "who sat", "answers": [{"text": "cat", "answer_start": 4}]},
        {"id": "b", "question": "who flew", "answers": [], "is_impossible": True},
        {"id": "c", "question": "where"},
    ]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(doc))
    pairs = read_pairs(path)
    assert [(p.id, p.answers, p.answer_start) for p in pairs] == [("a", ["cat"], 4), ("b", [], None), ("c", [], None)]
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"answer_start": 4}]
    path.write_text(json.dumps(doc))
    with pytest.raises(DtxError, match=r"paragraphs\[0\]\.qas\[0\]: every answer needs a 'text'"):
        read_pairs(path)


# -- training and evaluation on a tiny model --------------------------------------------------
@pytest.fixture(scope="module")
def qa_data(tmp_path_factory):
    """Questions whose answer is the word after a marker word, with a share of unanswerable ones."""
    rng = random.Random(1)
    rows = []
    for i in range(160):
        words = [rng.choice(WORDS[12:]) for _ in range(rng.randint(10, 30))]
        if i % 4:
            at = rng.randrange(len(words) - 1)
            words[at] = "king"
            rows.append({"id": f"q{i}", "question": "what follows king", "passage": " ".join(words) + f" {i % 7}", "answers": [words[at + 1]]})
        else:
            rows.append({"id": f"q{i}", "question": "what follows king", "passage": " ".join(w for w in words if w != "king") + f" {i % 7}", "answers": []})
    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_finetune_qa_reports_has_and_no_answer(model_dir, qa_data, tmp_path):
    cfg = FinetuneConfig(epochs=1, batch_size=16, lr=1e-3, max_len=48, doc_stride=8, dev_percent=20)
    report = finetune_qa(model_dir("bert", "qa"), qa_data, tmp_path / "t", cfg, progress=False)
    d = report["dev"]
    assert report["task"] == "qa" and d["HasAns_total"] > 0 and d["NoAns_total"] > 0 and d["total"] == report["dev_questions"]
    weighted = (d["HasAns_f1"] * d["HasAns_total"] + d["NoAns_f1"] * d["NoAns_total"]) / d["total"]
    assert d["f1"] == pytest.approx(weighted, abs=1e-9) and report["history"][-1]["dev"] == d  # the kept epoch's dev score


def test_qa_distill_phase1_codec_only_and_squad_report(model_dir, qa_data, tmp_path):
    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, compress=2, max_question_len=16, max_passage_len=32)
    before = ckpt.model.state_dict()
    report = distill(ckpt.path, qa_data, DistillConfig(epochs=0, phase1_epochs=1, batch_size=16, dev_limit=16), tmp_path / "p1", progress=False)
    after = load_checkpoint(tmp_path / "p1").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("input.compressor.", "cross.decompressor.")) for k in changed)
    report = distill(ckpt.path, qa_data, DistillConfig(epochs=1, phase1_epochs=0, batch_size=16, dev_limit=24), tmp_path / "p2", progress=False)
    final = report["final"]
    assert set(final) == {"student", "teacher", "agreement"}
    assert final["student"]["total"] == report["dev_pairs"] > 0 and "HasAns_f1" in final["teacher"]
    assert report["history"][-1]["loss"]["kl"] > 0 and report["history"][-1]["loss"]["hidden"] > 0
    # then calibrated on the selection split: the thresholds are in the report and in the published checkpoint
    assert report["no_answer"]["questions"] == report["select_pairs"] > 0
    assert load_checkpoint(tmp_path / "p2").meta.no_answer.to_dict() == report["no_answer"]


def test_training_as_deployed_adds_hard_negatives_to_teacher_and_student(model_dir, qa_data, tmp_path):
    """Both recipes read, beside each question's paragraph, BM25 neighbours labelled no answer; the student's layer-wise terms are on."""
    cfg = FinetuneConfig(epochs=1, batch_size=16, lr=1e-3, max_len=48, doc_stride=8, dev_percent=20, dev_limit=8)
    plain = finetune_qa(model_dir("bert", "qa"), qa_data, tmp_path / "t0", replace(cfg, negatives=0.0), progress=False)
    report = finetune_qa(model_dir("bert", "qa"), qa_data, tmp_path / "t", cfg, progress=False)
    assert plain["negative_windows"] == 0 and report["negative_windows"] > 0.3 * report["train_questions"]
    assert report["train_windows"] == plain["train_windows"] + report["negative_windows"]
    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=1, compress=2, max_question_len=16, max_passage_len=32)
    r = distill(ckpt.path, qa_data, DistillConfig(epochs=1, phase1_epochs=0, batch_size=16, dev_limit=8), tmp_path / "s", progress=False)
    assert r["negative_windows"] > 0 and r["train_examples"] > r["negative_windows"]
    loss = r["history"][-1]["loss"]
    assert loss["attention"] > 0 and loss["input_layer"] > 0 and loss["cross_layers"] > 0  # 1/3 of 4 layers: two intermediate cross layers
    off = distill(ckpt.path, qa_data, DistillConfig(epochs=1, phase1_epochs=0, batch_size=16, dev_limit=8, cross_layers=False, input_layer=False, negatives=0.0), tmp_path / "s0", progress=False, calibrate=False)
    assert "no_answer" in r and "no_answer" not in off and not load_checkpoint(tmp_path / "s0").meta.no_answer.calibrated
    assert off["negative_windows"] == 0 and off["history"][-1]["loss"]["cross_layers"] == 0 == off["history"][-1]["loss"]["input_layer"]


def test_augmented_copies_follow_the_own_windows_and_train(model_dir, qa_data, tmp_path):
    """QA: the copies (here of both texts) follow the question's own windows (not the hard negatives), enter the teacher cache, and the run trains."""
    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=1, compress=2, max_question_len=16, max_passage_len=32)
    cfg = DistillConfig(epochs=1, phase1_epochs=0, batch_size=16, dev_limit=8)
    plain = distill(ckpt.path, qa_data, cfg, tmp_path / "plain", progress=False)
    r = distill(ckpt.path, qa_data, DistillConfig(epochs=1, phase1_epochs=0, batch_size=16, dev_limit=8, augment=1.0, augment_side="both"), tmp_path / "aug", progress=False)
    own = plain["train_examples"] - plain["negative_windows"]
    assert plain["augmented_examples"] == 0 and r["augmented_examples"] == own > 0
    assert r["train_examples"] == plain["train_examples"] + own and r["negative_windows"] == plain["negative_windows"]
    loss = r["history"][-1]["loss"]
    assert all(math.isfinite(v) for v in loss.values()) and loss["kl"] > 0 and loss["ce"] > 0


def test_last_layer_term_is_the_same_whether_the_layer_wise_terms_are_on(model_dir, qa_data, tmp_path):
    """The student's last state is compared with the teacher's last, whichever layer the teacher cache starts from."""
    from dtx.train import distill as distill_mod

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=1, compress=2, max_question_len=16, max_passage_len=32)
    hidden = {}
    for layerwise in (True, False):
        cfg = DistillConfig(batch_size=8, cross_layers=layerwise, input_layer=layerwise, bf16=False)
        s = distill_mod._setup(ckpt.path, qa_data, cfg, "cpu")
        examples = s.examples[:8]
        cache = distill_mod.TeacherCache(s.teacher_c, s.seg, examples, True, 8, s.device, False, False, distill_mod._cache_start(s.ckpt, cfg))
        run = distill_mod._Run(s.ckpt, s.ckpt.model.eval(), s.teacher, s.seg, examples, True, cache, cfg, tmp_path, {}, s.device, False, False)
        b = distill_mod.make_batch(s.seg, examples, True)
        with torch.no_grad():
            terms = run._phase2_terms(b, list(range(8)), [])
            states, mask = s.ckpt.model.cross.states(s.ckpt.model.input(*b["q"]), b["q"][1], s.ckpt.model.input(*b["p"]), b["p"][1])
            full = s.teacher_c.encoder.encode(*distill_mod._joined(b))
        hidden[layerwise] = terms.hidden.item()
        assert abs(terms.hidden.item() - masked_mse(states[-1], full, mask).item()) < 1e-5
    assert abs(hidden[True] - hidden[False]) < 1e-5


def test_gradient_shares_show_the_probability_target_moves_little(model_dir, qa_data, tmp_path):
    """Shares sum to 1; TinyBERT's score target carries far more of the gradient than the probabilities did at the same weight."""
    from dtx.train.distill import gradient_shares

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, compress=2, max_question_len=16, max_passage_len=32)
    base = DistillConfig(batch_size=8, cross_layers=False, input_layer=False, attention_weight=0.5)
    probs = gradient_shares(ckpt.path, qa_data, replace(base, attention_target="probs"), batches=3)
    scores = gradient_shares(ckpt.path, qa_data, base, batches=3)
    for r in (probs, scores):
        assert abs(sum(t["share"] for t in r["terms"].values()) - 1) < 1e-6
        assert r["terms"]["cross_layers"]["share"] == 0 == r["terms"]["input_layer"]["share"]
    assert scores["terms"]["attention"]["share"] > 5 * probs["terms"]["attention"]["share"] > 0
    layerwise = gradient_shares(ckpt.path, qa_data, replace(base, input_layer=True), batches=3)
    assert layerwise["terms"]["input_layer"]["share"] > 0


def test_eval_agrees_across_checkpoint_export_and_engine(engine, exported, qa_data):
    ckpt_dir, export_dir = exported("bert", 2, 2)
    _, engine_dir = engine()
    reports = [evaluate_model(p, qa_data, split="all", limit=40, progress=False) for p in (ckpt_dir, export_dir, engine_dir)]
    assert [r["kind"] for r in reports] == ["checkpoint", "export", "engine"]
    for r in reports[1:]:  # the same model three ways: fp32 differences (1e-5) change no answer on these 40 questions
        for who in ("teacher", "student"):
            assert (r[who]["exact"], r[who]["f1"]) == pytest.approx((reports[0][who]["exact"], reports[0][who]["f1"]), abs=1e-9)
        assert r["agreement"] == reports[0]["agreement"]


def test_eval_cli_table_and_errors(exported, qa_data, tmp_path):
    _, export_dir = exported("bert", 2, 2)
    result = CliRunner().invoke(main, ["eval", str(export_dir), "--data", str(qa_data), "--split", "all", "--limit", "20", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "HasAns" in result.output and "teacher" in result.output
    assert json.loads((tmp_path / "e.json").read_text())["examples"] == 20
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("the cat\tthe cat sat\tTrue\n")
    result = CliRunner().invoke(main, ["eval", str(export_dir), "--data", str(pairs), "--split", "all"])
    assert result.exit_code == 1 and "not questions with answers" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["eval", str(export_dir), "--data", str(qa_data), "--split", "test"])
    assert result.exit_code != 0 and "test" in result.output


def test_sweep_table_resumes_and_plots(model_dir, qa_data, tmp_path):
    from dtx.train.sweep import SweepConfig, run_sweep

    cfg = SweepConfig([1, 3], [2], DistillConfig(epochs=1, phase1_epochs=1, batch_size=32, train_limit=32, dev_limit=8), ["distill", "phase2-only", "labels-only"])
    teacher = model_dir("bert", "qa")
    report = run_sweep(teacher, qa_data, tmp_path / "sweep", cfg, progress=False)
    assert [(r["split"], r["variant"]) for r in report["rows"]] == [(n, v) for n in (1, 3) for v in ("distill", "phase2-only", "labels-only")]
    for r in report["rows"]:
        assert r["metric"] == "f1" and r["flop_speedup"] > 1 and r["cache_bytes_per_passage"] == 150 * 16 * 2
    assert report["rows"][0]["flop_speedup"] < report["rows"][3]["flop_speedup"]  # a later split saves more
    stamp = (tmp_path / "sweep" / "split1-k2-distill" / "model.safetensors").stat().st_mtime_ns
    again = run_sweep(teacher, qa_data, tmp_path / "sweep", cfg, progress=False)
    assert again["rows"] == report["rows"] and (tmp_path / "sweep" / "split1-k2-distill" / "model.safetensors").stat().st_mtime_ns == stamp
    result = CliRunner().invoke(main, ["sweep", str(teacher), "--data", str(qa_data), "--splits", "1,3", "-k", "2", "--variants", "distill,phase2-only,labels-only",
                                       "--epochs", "1", "--batch-size", "32", "--train-limit", "32", "--dev-limit", "8", "-o", str(tmp_path / "sweep"), "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and (tmp_path / "s.png").stat().st_size > 0
    assert "outside 0..4" in CliRunner().invoke(main, ["sweep", str(teacher), "--data", str(qa_data), "--splits", "9", "-o", str(tmp_path / "x")]).output


def test_sweep_cells_in_parallel_equal_cells_one_at_a_time(model_dir, qa_data, tmp_path):
    """`--jobs 2` trains each cell in its own process; with the same threads per cell the students are the same."""
    import os

    from safetensors.torch import load_file

    from dtx.train.sweep import SweepConfig, run_sweep

    cfg = SweepConfig([1, 2], [2], DistillConfig(epochs=1, phase1_epochs=1, batch_size=32, train_limit=32, dev_limit=8, bf16=False))
    teacher = model_dir("bert", "qa")
    parallel = run_sweep(teacher, qa_data, tmp_path / "par", cfg, progress=False, jobs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # what each of the 2 workers got
    try:
        serial = run_sweep(teacher, qa_data, tmp_path / "ser", cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    without_time = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    assert [without_time(r) for r in parallel["rows"]] == [without_time(r) for r in serial["rows"]]
    assert [(r["split"], r["compress"]) for r in parallel["rows"]] == [(1, 2), (2, 2)]
    for cell in ("split1-k2-distill", "split2-k2-distill"):
        a, b = load_file(tmp_path / "par" / cell / "model.safetensors"), load_file(tmp_path / "ser" / cell / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), cell
    assert json.loads((tmp_path / "par" / "sweep.json").read_text())["rows"] == parallel["rows"]


def test_sweep_cell_failing_in_a_worker_is_one_error(model_dir, tmp_path):
    from dtx.train.sweep import SweepConfig, run_sweep

    missing = tmp_path / "nowhere.json"
    cfg = SweepConfig([1, 2], [2], DistillConfig(epochs=1, phase1_epochs=1, batch_size=32, train_limit=32, dev_limit=8))
    with pytest.raises(DtxError, match="nowhere.json"):
        run_sweep(model_dir("bert", "qa"), missing, tmp_path / "sweep", cfg, progress=False, jobs=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_sweep_cells_in_parallel_on_one_gpu(model_dir, qa_data, tmp_path):
    """`--jobs` on CUDA: spawned workers share the GPU, every cell finishes, and the teacher scores as on the CPU."""
    from dtx.train.sweep import SweepConfig, run_sweep

    cfg = SweepConfig([1, 2], [2, 1], DistillConfig(epochs=1, min_epochs=1, phase1_epochs=1, batch_size=16, train_limit=32, dev_limit=8))
    report = run_sweep(model_dir("bert", "qa"), qa_data, tmp_path / "sweep", cfg, progress=False, device="cuda", jobs=4)
    assert [(r["split"], r["compress"]) for r in report["rows"]] == [(1, 2), (1, 1), (2, 2), (2, 1)]
    on_cpu = run_sweep(model_dir("bert", "qa"), qa_data, tmp_path / "cpu", SweepConfig([1], [2], cfg.distill), progress=False, device="cpu")
    assert {r["teacher"] for r in report["rows"]} == {on_cpu["rows"][0]["teacher"]}


def test_sweep_grid_trains_a_cell_per_setting(model_dir, qa_data, tmp_path):
    """`--grid lr=...`: one student per value, trained with it, named by it, and refused when the setting is unknown."""
    from dtx.train.sweep import SweepConfig, run_sweep

    cfg = SweepConfig([1], [2], DistillConfig(epochs=1, min_epochs=1, phase1_epochs=1, batch_size=32, train_limit=32, dev_limit=8), grid={"lr": [1e-4, 1e-3]})
    report = run_sweep(model_dir("bert", "qa"), qa_data, tmp_path / "g", cfg, progress=False)
    assert [r["settings"] for r in report["rows"]] == [{"lr": 1e-4}, {"lr": 1e-3}]
    for lr in (1e-4, 1e-3):
        meta = json.loads((tmp_path / "g" / f"split1-k2-distill-lr{lr}" / "decoupled.json").read_text())
        assert meta["distill"]["config"]["lr"] == lr
    bad = CliRunner().invoke(main, ["sweep", str(model_dir("bert", "qa")), "--data", str(qa_data), "--splits", "1", "-o", str(tmp_path / "x"), "--grid", "learning=1"])
    assert bad.exit_code == 2 and "SETTING one of" in bad.output and not (tmp_path / "x").exists()


def test_sweep_grid_reads_on_off_terms_as_booleans(model_dir, qa_data, tmp_path):
    """The recipe's term ablation (`--grid cross_layers=true,false`): switches parse to booleans, a non-switch value is refused."""
    import click

    from dtx.cli import _grid, sweep

    ctx = click.Context(sweep)
    grid = _grid(ctx, ("cross-layers=true,false", "input_layer=false", "attention_weight=0,0.05", "augment=0,1"))
    assert grid == {"cross_layers": [True, False], "input_layer": [False], "attention_weight": [0.0, 0.05], "augment": [0.0, 1.0]}
    bad = CliRunner().invoke(main, ["sweep", str(model_dir("bert", "qa")), "--data", str(qa_data), "--splits", "1", "-o", str(tmp_path / "x"), "--grid", "cross_layers=maybe"])
    assert bad.exit_code == 2 and "maybe" in bad.output and not (tmp_path / "x").exists()
