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
    ("build-engine", [X, "--int8", "--int8-smooth", "1.5"], "--int8-smooth"),
    ("build-engine", [X, "--int8-smooth", "0.5"], "--int8 (dynamic mode) only"),
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
    ("bench", [X, "--arch", "bert-base"], "not both"),
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


def _numeric_cases() -> list[tuple[str, str, str]]:
    """(verb, option, a value below its range) for every bounded numeric option of every verb."""
    import click

    cases = []
    for verb, cmd in sorted(main.commands.items()):
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, (click.IntRange, click.FloatRange)) and p.type.min is not None:
                below = p.type.min - 1 if isinstance(p.type, click.IntRange) else p.type.min - 0.5
                cases.append((verb, p.opts[0], str(below)))
    return cases


def _filler(cmd, skip: str) -> list[str]:
    """Valid values for every required argument and option of `cmd` except `skip` (paths need not exist)."""
    import click

    args: list[str] = []
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            args.append(X)
        elif isinstance(p, click.Option) and p.required and p.opts[0] != skip:
            numeric = isinstance(p.type, (click.IntRange, click.FloatRange)) or p.type is click.INT or p.callback is not None  # callbacks parse integer lists
            value = p.type.choices[0] if isinstance(p.type, click.Choice) else "1" if numeric else X
            args += [p.opts[0], value]
    return args


@pytest.mark.parametrize("verb,option,value", _numeric_cases(), ids=lambda x: str(x))
def test_every_bounded_numeric_option_refuses_a_value_below_its_range(verb, option, value):
    cmd = main.commands[verb]
    result = CliRunner().invoke(main, [verb, *_filler(cmd, option), option, value])
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    assert option in lines[0] or any(o in lines[0] for o in next(p for p in cmd.params if p.opts[0] == option).opts)


def test_a_store_deleted_while_it_is_read_is_one_line(engine, tmp_path):
    import json
    import shutil

    from dtx.query import QueryPipeline
    from dtx.store.indexer import index_corpus
    from dtx.store.passage_store import StoreError

    _, engine_dir = engine()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"the river city king number {i}"}) + "\n" for i in range(6)))
    index_corpus(corpus, engine_dir, tmp_path / "s", batch=8, chunk=16, progress=False)
    with QueryPipeline.open(tmp_path / "s") as pipe:
        assert pipe.answer("river city", k=3).candidates
        shutil.rmtree(tmp_path / "s")
        with pytest.raises(StoreError, match="cannot (search|fetch from) store"):
            pipe.answer("river city", k=3)
