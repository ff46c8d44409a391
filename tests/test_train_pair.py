"""Pair fine-tuning pieces: metrics against hand counts, leak-free splits, data errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dtx.data.pairs import Pair, read_pairs
from dtx.errors import DtxError
from dtx.eval.metrics import pair_metrics
from dtx.train.finetune import FinetuneConfig, finetune_pair
from dtx.data.splits import passage_band, split_by_passage, training_split


def test_pair_metrics_hand_count():
    pred, gold = np.array([0, 0, 1, 2, 2, 1]), np.array([0, 1, 1, 2, 0, 1])
    m = pair_metrics(pred, gold, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp0 fn1 -> 0.8; class 2: tp1 fp1 fn0 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_split_keeps_each_passage_on_one_side():
    pairs = [Pair(f"q{i}", f"passage {i % 37}", "A") for i in range(500)]
    train, dev = split_by_passage(pairs, 20)
    assert {p.passage for p in train}.isdisjoint({p.passage for p in dev})
    assert 0 < len(dev) < len(train) and len(train) + len(dev) == 500
    assert split_by_passage(list(reversed(pairs)), 20)[1] == list(reversed(dev))


def test_training_split_holds_out_a_selection_band_apart_from_dev():
    """Epochs are chosen on passages that neither train nor dev holds; dev is the same passages `split_by_passage`
    reports on, and with no selection band the epochs are chosen on dev itself (runs made before the band)."""
    pairs = [Pair(f"q{i}", f"passage {i % 211}", "A") for i in range(2000)]
    train, select, dev = training_split(pairs, 10, "p.jsonl", 5)
    sides = [{p.passage for p in side} for side in (train, select, dev)]
    assert all(a.isdisjoint(b) for i, a in enumerate(sides) for b in sides[i + 1 :]) and len(train) + len(select) + len(dev) == 2000
    assert dev == split_by_passage(pairs, 10)[1] and 0 < len(select) < len(dev)
    assert all(10 <= passage_band(p.passage) < 15 for p in select)
    train0, select0, dev0 = training_split(pairs, 10, "p.jsonl", 0)
    assert select0 is dev0 and dev0 == dev and len(train0) == len(train) + len(select)


def test_no_passage_to_select_on_is_one_line():
    """Data whose passages fall on dev and training but none in the selection band: the error names the fix."""
    names = [f"passage {i}" for i in range(200)]
    chosen = [n for n in names if passage_band(n) < 10][:2] + [n for n in names if passage_band(n) >= 15][:5]
    pairs = [Pair(f"q{i}", chosen[i % 7], "A") for i in range(70)]
    with pytest.raises(DtxError, match=r"none of its 7 passages falls on the epoch-selection side.*--select-percent 0") as e:
        training_split(pairs, 10, "p.jsonl", 5)
    assert "\n" not in str(e.value)


def test_a_run_saved_before_the_selection_band_resumes_only_as_it_began():
    """A saved config without `select_percent` chose its epochs on dev: it matches --select-percent 0, not today's default."""
    from dataclasses import asdict

    from dtx.train.config import DistillConfig, same_settings

    old = {k: v for k, v in asdict(DistillConfig()).items() if k != "select_percent"}
    assert not same_settings(old, DistillConfig()) and same_settings(old, DistillConfig(select_percent=0))
    assert same_settings(asdict(DistillConfig()), DistillConfig()) and same_settings(None, DistillConfig())


def test_select_percent_must_leave_passages_to_train_on():
    from dtx.errors import ConfigError
    from dtx.train.config import FinetuneConfig

    with pytest.raises(ConfigError, match="leave none to train on"):
        FinetuneConfig(select_percent=90).check()


@pytest.mark.parametrize(
    "content,needle",
    [
        ("", "is empty"),
        ('{"question": "a"}\n', ":1: needs string fields"),
        ('{"question": "a", "passage": "b"}\n{oops\n', ":2: not valid JSON"),
        ("only one column\n", ":1: expected question<TAB>passage"),
        # QA lines
        ('{"question": "q", "passage": "the cat", "answers": ["cat"]}\n{"question": "q"}\n', r"pairs\.jsonl:2"),
        ('{"question": "q", "passage": "the cat", "answers": "cat"}\n', r"pairs\.jsonl:1: 'answers' must be a list"),
    ],
)
def test_bad_pair_files_name_file_and_line(tmp_path, content, needle):
    f = tmp_path / "pairs.jsonl"
    f.write_text(content)
    with pytest.raises(DtxError, match=needle):
        read_pairs(f)


def test_real_data_readers(disfl_qa):
    qa = read_pairs(disfl_qa)
    assert len(qa) == 8000 and sum(not p.answers for p in qa) == 2107
    vc = read_pairs(disfl_qa.parent / "vitaminc.task.json.gz", limit=100)
    assert {p.label for p in vc} <= {"True", "False", "Neither"} and all(p.question and p.passage for p in vc)


def test_finetune_needs_labels(model_dir, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"question": "the river", "passage": "the river is large ."}\n')
    with pytest.raises(DtxError, match="has no label"):
        finetune_pair(model_dir("bert", "pair"), f, tmp_path / "out", FinetuneConfig(), progress=False)


def test_finetune_learns_a_separable_task(model_dir, tmp_path):
    """A label readable from one word: the tiny model must beat chance clearly on held-out passages."""
    rng = np.random.default_rng(0)
    words = ["river", "city", "king", "music", "water", "light", "house", "school"]
    rows = []
    for i in range(400):
        label = ["north", "south"][i % 2]
        passage = " ".join(rng.choice(words, 6)) + f" {label} {i % 97} ."
        rows.append({"question": "which way", "passage": passage.replace(f" {i % 97}", " " + words[i % 97 % 8] * 1), "label": label})
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = FinetuneConfig(epochs=6, batch_size=16, lr=1e-3, max_len=32, dev_percent=25)
    report = finetune_pair(model_dir("bert", "pair"), f, tmp_path / "out", cfg, progress=False)
    assert report["labels"] == ["north", "south"] and report["dev"]["accuracy"] > 0.8
    assert all(set(h) >= {"select", "dev"} for h in report["history"]) and report["select_pairs"] > 0 and report["dev_pairs"] > 0
    assert report["select"] == report["history"][report["best_epoch"] - 1]["select"]
    assert report["dev_majority"]["label"] in ("north", "south") and 0.5 <= report["dev_majority"]["accuracy"] < report["dev"]["accuracy"]
    assert (tmp_path / "out" / "dtx_finetune.json").is_file()


def test_a_teacher_at_its_label_prior_is_named():
    """VitaminC on 12,000 pairs kept 0.493 accuracy where always answering "True" scores 0.5085: `dtx finetune`
    must say so rather than publish a teacher that learned only the prior; one above the floor passes silently."""
    from dtx.train.finetune import majority_baseline, prior_warning

    dev = [Pair("c", f"e{i}", label) for i, label in enumerate(["True"] * 5 + ["False"] * 3 + ["Neither"] * 2)]
    floor = majority_baseline(dev)
    assert floor == {"label": "True", "accuracy": 0.5}
    warning = prior_warning({"dev_majority": floor, "dev": {"accuracy": 0.49}, "config": {"train_limit": 12000}})
    assert warning and "'True' (0.5000)" in warning and "--train-limit 12000" in warning and "\n" not in warning
    assert "--train-limit" not in prior_warning({"dev_majority": floor, "dev": {"accuracy": 0.5}, "config": {"train_limit": None}})
    assert prior_warning({"dev_majority": floor, "dev": {"accuracy": 0.6}}) is None
    assert prior_warning({"dev": {"accuracy": 0.3}}) is None  # a report from before the floor was recorded


def test_finetune_cli_prints_the_prior_warning(monkeypatch, tmp_path):
    """The CLI prints the report's line, then the warning (stderr) for a teacher at its label prior, and nothing more above it."""
    from click.testing import CliRunner

    from dtx.cli import main
    from dtx.train import finetune as ft

    report = {
        "train_pairs": 12000, "epochs_run": 3, "train_seconds": 1190.0, "best_epoch": 2, "history": [{"dev": {"accuracy": a}} for a in (0.477, 0.493, 0.4655)],
        "dev": {"accuracy": 0.493, "macro_f1": 0.347, "pairs": 2000}, "dev_majority": {"label": "True", "accuracy": 0.5085}, "config": {"train_limit": 12000},
    }  # fmt: skip
    monkeypatch.setattr(ft, "finetune_pair", lambda *a, **k: report)
    data = tmp_path / "p.jsonl"
    data.write_text('{"question": "q", "passage": "p", "label": "True"}\n')
    r = CliRunner().invoke(main, ["finetune", str(tmp_path), "--task", "pair", "--data", str(data), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "accuracy 0.4930" in r.stdout and "warning" not in r.stdout
    assert r.stderr.startswith("warning: the kept dev accuracy 0.4930 is no better than always answering 'True' (0.5085)") and len(r.stderr.splitlines()) == 1
    report["dev"]["accuracy"] = 0.67
    r = CliRunner().invoke(main, ["finetune", str(tmp_path), "--task", "pair", "--data", str(data), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0 and r.stderr == ""
