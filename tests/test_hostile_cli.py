"""A hostile user's second pass at the CLI (issue 24): nothing a user has is lost, nothing is silently
wrong, and every refusal is one line naming the problem and the fix - each case tested as the class it
stands for (every verb with the same flaw), before any work where the flaw is knowable up front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dtx.cli import main
from dtx.data.splits import is_dev

X = f"/nonexistent-{os.getpid()}/dtx-hostile"  # a path no run has made: each run names its own


def one_line(args: list[str], status: int = 1) -> str:
    result = CliRunner().invoke(main, args)
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == status and len(lines) == 1 and lines[0].startswith("Error: "), (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return lines[0]


def qa_rows(n: int, side: str | None = None) -> list[dict]:
    """n answerable questions on n distinct passages; `side` "train" keeps only passages the split trains on."""
    rows, i = [], 0
    while len(rows) < n:
        passage = f"the king of city {i} was north of the river {i} ."
        i += 1
        if side == "train" and is_dev(passage):
            continue
        rows.append({"id": f"q{i}", "question": f"who was king of city {i - 1}", "passage": passage, "answers": ["north"]})
    return rows


def write_jsonl(path: Path, rows: list[dict], bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- data lost: one rule for every verb that replaces a directory -----------------------------------

# (verb, its arguments with OUT for the directory it writes, the file that marks dtx's own artifact there)
WRITERS = [
    ("decouple", [X, "--split", "2", "-o", "OUT", "--overwrite"], "decoupled.json"),
    ("export", [X, "-o", "OUT", "--overwrite"], "manifest.json"),
    ("build-engine", [X, "-o", "OUT"], "engine.json"),
    ("finetune", [X, "--task", "qa", "--data", X, "-o", "OUT", "--overwrite"], "dtx_finetune.json"),
    ("distill", [X, "--data", X, "-o", "OUT"], "decoupled.json"),
]


@pytest.mark.parametrize("verb,args,marker", WRITERS, ids=[w[0] for w in WRITERS])
def test_no_verb_replaces_a_directory_holding_a_users_files(verb, args, marker, tmp_path):
    """`--overwrite` (and verbs that replace by default) replace only dtx's own artifact of that kind: a user's
    directory, or an artifact with a user's file beside it, is refused before any work, and nothing is lost."""
    users = tmp_path / "mine"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    line = one_line([verb, *[str(users) if a == "OUT" else a for a in args]])
    assert "is not a dtx" in line and "choose another -o" in line
    assert (users / "thesis.tex").read_text() == "years of work"

    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / marker).write_text("{}")
    (artifact / "notes.txt").write_text("mine")
    line = one_line([verb, *[str(artifact) if a == "OUT" else a for a in args]])
    assert "not part of its" in line and "notes.txt" in line
    assert (artifact / "notes.txt").read_text() == "mine" and (artifact / marker).read_text() == "{}"


@pytest.mark.parametrize(
    "verb,args",
    [
        *[(verb, args) for verb, args, _ in WRITERS],
        ("sweep", [X, "--data", X, "--splits", "1", "-o", "OUT"]),
        ("index", [X, "--engine", X, "-o", "OUT"]),
        ("bench-store", ["--arch", "bert-base", "--store", "OUT"]),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(verb, args, tmp_path):
    """`finetune -o` on an unwritable place trained a whole run and then failed: every verb that writes a
    directory tries its place first (for real: as root, permission bits say nothing)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker / "out", Path("/proc/dtx-hostile-out")):
        line = one_line([verb, *[str(out) if a == "OUT" else a for a in args]])
        assert f"cannot write {out}" in line and ("is a file" in line or "not writable" in line), line


def test_an_own_artifact_is_replaced_only_with_overwrite_and_checked_again_before_the_swap(tmp_path):
    from dtx.atomic import atomic_dir
    from dtx.errors import DtxError
    from dtx.model.checkpoint import CHECKPOINT

    target = tmp_path / "ckpt"
    with atomic_dir(target, kind=CHECKPOINT) as tmp:
        (tmp / "decoupled.json").write_text("{}")
        (tmp / "teacher").mkdir()
        (tmp / "teacher" / "config.json").write_text("{}")
    with pytest.raises(DtxError, match="already exists.*--overwrite"):
        with atomic_dir(target, kind=CHECKPOINT):
            pass
    with pytest.raises(DtxError, match="not part of its checkpoint.*late.txt"):
        with atomic_dir(target, overwrite=True, kind=CHECKPOINT) as tmp:
            (tmp / "decoupled.json").write_text('{"new": 1}')
            (target / "late.txt").write_text("written by the user while dtx worked")
    assert (target / "late.txt").exists() and (target / "decoupled.json").read_text() == "{}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp directory left behind"
    (target / "late.txt").unlink()
    with atomic_dir(target, overwrite=True, kind=CHECKPOINT) as tmp:
        (tmp / "decoupled.json").write_text('{"new": 1}')
    assert (target / "decoupled.json").read_text() == '{"new": 1}' and not (target / "teacher").exists()


def test_decouple_overwrite_keeps_a_users_file_and_replaces_its_own_checkpoint(model_dir, tmp_path):
    out = tmp_path / "DIR"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert "is not a dtx checkpoint" in one_line(["decouple", str(model_dir("bert")), "--task", "qa", "--split", "2", "-o", str(out), "--overwrite"])
    assert (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()  # an empty directory is written into
    for _ in range(2):  # the second run replaces its own checkpoint
        result = CliRunner().invoke(main, ["decouple", str(model_dir("bert")), "--task", "qa", "--split", "2", "-o", str(out), "--overwrite"])
        assert result.exit_code == 0, result.output


# -- silently wrong ----------------------------------------------------------------------------------


def test_finetune_refuses_data_with_nothing_held_out_before_training(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train-only.jsonl", qa_rows(12, side="train"))
    for task, model in (("qa", model_dir("bert", "qa")), ("pair", model_dir("bert", "pair"))):
        if task == "pair":
            data = write_jsonl(tmp_path / "pairs.jsonl", [{**r, "label": "yes" if i % 2 else "no"} for i, r in enumerate(qa_rows(12, side="train"))])
        line = one_line(["finetune", str(model), "--task", task, "--data", str(data), "-o", str(tmp_path / f"out-{task}")])
        assert "held-out side" in line and "more distinct passages" in line
        assert not (tmp_path / f"out-{task}").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["finetune", X, "--task", "qa", "--data", X, "-o", "OUT", "--epochs", "100000", "--train-limit", "16"],
        ["distill", X, "--data", X, "-o", "OUT", "--epochs", "100000"],
        ["sweep", X, "--data", X, "--splits", "1", "-o", "OUT", "--grid", "epochs=5,100000"],
    ],
    ids=["finetune", "distill", "sweep"],
)
def test_a_warm_up_longer_than_early_stopping_may_run_is_refused(args, tmp_path):
    """--epochs 100000 spread warm-up over 10,000 epochs; early stopping then published an untrained model."""
    line = one_line([str(tmp_path / "out") if a == "OUT" else a for a in args])
    assert "epochs of warm-up" in line and "--min-epochs" in line and "pass --epochs at most" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args,option",
    [
        (["answer", X, "who", "--ids", ","], "--ids"),
        (["rerank", X, "who", "--ids", " , "], "--ids"),
        (["sweep", X, "--data", X, "--splits", ",", "-o", X], "--splits"),
        (["bench", "--arch", "bert-base", "-K", ","], "--candidates"),
    ],
)
def test_a_list_option_naming_nothing_is_refused_not_taken_as_its_default(args, option):
    assert option in one_line(args, status=2)


def test_store_verbs_refuse_options_that_do_not_apply_or_do_not_exist(engine, tmp_path):
    from dtx.store.indexer import index_corpus

    _, engine_dir = engine()
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": f"the river city king number {i}"} for i in range(4)])
    index_corpus(corpus, engine_dir, tmp_path / "s", batch=8, chunk=16, progress=False)
    store = str(tmp_path / "s")
    assert "--label" in one_line(["rerank", store, "river", "--label", "yes"]) and "QA reader" in one_line(["rerank", store, "river", "--label", "yes"])
    for verb in ("answer", "rerank"):  # eval-store, check-store and serve open the same QueryPipeline.open
        line = one_line([verb, store, "river", "--engine", "/nonexistent/engine"])
        assert "engine /nonexistent/engine does not exist" in line and "is gone" not in line
    assert CliRunner().invoke(main, ["answer", store, "river", "--ids", "d1,d2"]).exit_code == 0


def test_info_refuses_lengths_past_the_checkpoint_window(exported):
    ckpt_dir, _ = exported()
    line = one_line(["info", str(ckpt_dir), "--seq-q", "100000"])
    assert "--seq-q 100000" in line and "window (32 tokens)" in line and "at most 32" in line
    assert "--seq-p" in one_line(["info", str(ckpt_dir), "--seq-p", "100000"])
    result = CliRunner().invoke(main, ["info", str(ckpt_dir)])  # the defaults fit the window
    assert result.exit_code == 0 and "question 32 + passage" in result.output, result.output


# -- misleading or a traceback -----------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["decouple", "finetune", "sweep"])
def test_a_corrupt_model_config_is_one_line(verb, model_dir, tmp_path):
    import shutil

    src = tmp_path / "model"
    shutil.copytree(model_dir("bert", "qa"), src)
    data = write_jsonl(tmp_path / "d.jsonl", qa_rows(40))
    args = {
        "decouple": [str(src), "--split", "2", "-o", str(tmp_path / "out")],
        "finetune": [str(src), "--task", "qa", "--data", str(data), "-o", str(tmp_path / "out")],
        "sweep": [str(src), "--data", str(data), "--splits", "1", "-o", str(tmp_path / "out")],
    }[verb]
    for text in ('{"model_type": "bert", "hidden_size": ', '{"model_type": "bert", "hidden_size": "big"}', "[1, 2]"):
        (src / "config.json").write_text(text)
        line = one_line([verb, *args])
        assert "config.json is not a usable Hugging Face config" in line and "restore it" in line


def test_a_finetune_report_beside_the_teacher_that_is_corrupt_is_one_line(model_dir, tmp_path):
    import shutil

    src = tmp_path / "model"
    shutil.copytree(model_dir("bert", "qa"), src)
    (src / "dtx_finetune.json").write_text('{"task": "qa", "config": {}}')
    assert "dtx_finetune.json is not a readable `dtx finetune` report" in one_line(["decouple", str(src), "--split", "2", "-o", str(tmp_path / "o")])


def test_ctrl_c_is_one_line_and_status_130_while_importing_and_while_working(model_dir, tmp_path, monkeypatch):
    """Ctrl-C during the imports (seconds: torch loads) printed a 63-line KeyboardInterrupt.

    The interrupt is raised where torch is imported (an import hook), whichever module imports it
    first: deterministic, where a timed SIGINT lands anywhere, even in a library's bare `except:`.
    The export is of a real checkpoint, so the command gets past its argument checks."""
    from dtx.model.decouple import decouple

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, max_question_len=16, max_passage_len=32)
    code = (
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        f"sys.argv = ['dtx', 'export', {str(ckpt.path)!r}, '-o', {str(tmp_path / 'out')!r}]\n"
        "from dtx.cli import main\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    err = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert run.returncode == 130 and len(err) == 1 and err[0].startswith("Error: interrupted (Ctrl-C)"), (run.returncode, run.stderr)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("dtx.export.exporter.export_checkpoint", interrupted)
    assert "interrupted (Ctrl-C)" in one_line(["export", X], status=130)


def test_a_byte_order_mark_is_not_part_of_the_data(tmp_path):
    from dtx.data.pairs import read_pairs
    from dtx.store.corpus import read_corpus

    rows = qa_rows(3)
    assert [p.question for p in read_pairs(write_jsonl(tmp_path / "q.jsonl", rows, bom=True))] == [r["question"] for r in rows]
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}], bom=True)
    assert [p.id for p in read_corpus(corpus)] == ["a", "b"]
    (tmp_path / "p.tsv").write_text("\ufeffwho\tthe king\tyes\n", encoding="utf-8")
    assert read_pairs(tmp_path / "p.tsv")[0].question == "who"


def test_a_stride_too_long_for_short_windows_names_doc_stride(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", qa_rows(60))
    line = one_line(["finetune", str(model_dir("bert", "qa")), "--task", "qa", "--data", str(data), "--max-len", "64", "-o", str(tmp_path / "o")])
    assert "--doc-stride 64" in line and "pass --doc-stride" in line and "--max-len" in line


def test_bench_store_refuses_more_candidates_than_passages_before_any_work(tmp_path):
    line = one_line(["bench-store", "--arch", "bert-base", "--store", str(tmp_path / "s"), "--passages", "5", "-K", "20"])
    assert "-K 20" in line and "5" in line and "--passages" in line
    assert not (tmp_path / "s").exists()
