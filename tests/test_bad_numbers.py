"""Nonsense numbers are refused at the CLI edge, each with one line naming the option, never a traceback.

Every case fails before any work starts (no model is loaded, nothing is written), so the whole
table runs in seconds; the paths need not exist because the values are checked first.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dtx.cli import main

X = "/nonexistent/dtx-test"
BAD = [
    ("decouple", [X, "--split", "-1", "-o", X], "--split"),
    ("decouple", [X, "--split", "2", "-k", "0", "-o", X], "--compress"),
    ("decouple", [X, "--split", "2", "--doc-stride", "-5", "-o", X], "--doc-stride"),
    ("decouple", [X, "--split", "2", "--max-question-len", "1", "-o", X], "--max-question-len"),
    ("info", [X, "-K", "-3"], "--candidates"),
    ("export", [X, "--opset", "5"], "--opset"),
    ("export", [X, "--opset", "99"], "opset 99 does not exist"),
    ("build-engine", [X, "--drift-pairs", "0"], "--drift-pairs"),
    ("build-engine", [X, "--seq-q", "0"], "--seq-q"),
    ("build-engine", [X, "--int8-keep-float", "-1"], "--int8-keep-float"),
    ("build-engine", [X, "--int8", "--fp16"], "--fp16 and --int8"),
    ("finetune", [X, "--task", "qa", "--data", X, "-o", X, "--epochs", "0"], "--epochs"),
    ("finetune", [X, "--task", "qa", "--data", X, "-o", X, "--lr", "-1"], "--lr"),
    ("finetune", [X, "--task", "qa", "--data", X, "-o", X, "--train-limit", "0"], "--train-limit"),
    ("finetune", [X, "--task", "qa", "--data", X, "-o", X, "--warmup", "2"], "--warmup"),
    ("distill", [X, "--data", X, "--alpha", "1.5"], "--alpha"),
    ("distill", [X, "--data", X, "--temperature", "0"], "--temperature"),
    ("distill", [X, "--data", X, "--batch-size", "0"], "--batch-size"),
    ("sweep", [X, "--data", X, "--splits", "1", "-o", X, "--epochs", "-2"], "--epochs"),
    ("plan", ["--passages", "-10"], "--passages"),
    ("plan", ["--passages", "10", "--layers", "0", "--split", "0"], "--layers"),
    ("index", [X, "--engine", X, "-o", X, "--limit", "0"], "--limit"),
    ("index", [X, "--engine", X, "-o", X, "--batch", "0"], "--batch"),
    ("answer", [X, "who", "-k", "-4"], "--candidates"),
    ("rerank", [X, "who", "--top", "0"], "--top"),
    ("check-store", [X, "--limit", "0"], "--limit"),
    ("bench", ["--arch", "bert-base", "-K", "-1"], "--candidates"),
    ("bench", ["--arch", "bert-base", "--runs", "0"], "--runs"),
    ("bench", ["--arch", "bert-base", "--seq-q", "100000"], "512 positions"),
    ("bench", [X, "--arch", "bert-base"], "one of them"),
    ("eval", [X, "--data", X, "--batch-size", "0"], "--batch-size"),
    ("eval", [X, "--data", X, "--limit", "-1"], "--limit"),
    ("eval-store", [X, "--data", X, "-k", "0"], "-k"),
    ("bench-store", ["--arch", "bert-base", "--store", X, "--passages", "0"], "--passages"),
    ("bench", ["--arch", "bert-base", "--json", "/nonexistent/dir/bench.json"], "does not exist"),
    ("bench", ["--arch", "bert-base", "--plot", "/nonexistent/dir/bench.png"], "does not exist"),
    ("sweep", [X, "--data", X, "--splits", "1", "-o", X, "--json", "/nonexistent/dir/s.json"], "does not exist"),
    ("eval", [X, "--data", X, "--json", "/nonexistent/dir/e.json"], "does not exist"),
]


@pytest.mark.parametrize("verb,args,names", BAD, ids=[f"{v}-{' '.join(a[-2:])}" for v, a, _ in BAD])
def test_bad_number_is_one_line(verb, args, names):
    result = CliRunner().invoke(main, [verb, *args])
    assert result.exit_code in (1, 2), result.output
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert names in lines[0]


def test_doc_stride_longer_than_the_window_is_refused_not_clamped(model_dir, tmp_path):
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(main, ["decouple", str(model_dir("bert", "qa")), "--split", "2", "--max-question-len", "16", "--max-passage-len", "32", "--doc-stride", "100", "-o", str(out)])
    assert result.exit_code == 1 and "--doc-stride 100 does not fit a passage window of 32 tokens" in result.output
    assert not out.exists()
    fine = CliRunner().invoke(main, ["decouple", str(model_dir("bert", "qa")), "--split", "2", "--max-question-len", "16", "--max-passage-len", "32", "-o", str(out)])
    assert fine.exit_code == 0, fine.output  # no stride given: the default shrinks to fit a short window


def _one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (result.output, result.exception)
    return lines[0]


def test_decouple_refuses_a_model_without_its_tokenizer_or_with_truncated_weights(model_dir, tmp_path):
    import shutil

    src = tmp_path / "model"
    shutil.copytree(model_dir("bert", "qa"), src)
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.unlink()
    assert "tokenizer" in _one_line_error(["decouple", str(src), "--split", "2", "-o", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()
    shutil.rmtree(src)
    shutil.copytree(model_dir("bert", "qa"), src)
    weights = src / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "cannot load the weights" in _one_line_error(["decouple", str(src), "--split", "2", "-o", str(tmp_path / "b")])


def test_a_replaced_teacher_is_refused_not_loaded_with_a_random_head(model_dir, tmp_path):
    from dtx.errors import CheckpointError
    from dtx.model.checkpoint import load_checkpoint
    from dtx.model.decouple import decouple

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, max_question_len=16, max_passage_len=32)
    teacher_file = next((ckpt.path / "teacher").glob("*.safetensors"))
    other = decouple(model_dir("bert", "pair"), tmp_path / "other", split=2, max_question_len=16, max_passage_len=32)
    teacher_file.write_bytes(next((other.path / "teacher").glob("*.safetensors")).read_bytes())
    with pytest.raises(CheckpointError, match="differs from the teacher"):
        load_checkpoint(tmp_path / "ckpt").teacher()


def test_plan_refuses_a_bench_json_that_is_not_a_report(tmp_path):
    for text in ("not json at all", '{"rows": []}', '["a list"]'):
        (tmp_path / "b.json").write_text(text)
        assert "is not a `dtx index --json`" in _one_line_error(["plan", "--passages", "1000", "--bench-json", str(tmp_path / "b.json")])
