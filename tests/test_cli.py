"""Every command's help works with only the core dependencies; `import dtx` stays light."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from dtx.cli import main
from dtx.engines.manifest import ServedShape, read_engine_manifest


def test_import_dtx_is_light():
    code = "import sys, dtx; print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("command", [[], *[[name] for name in main.commands]])
def test_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_design_card_commands_verbatim(tmp_path, monkeypatch):
    """In a directory holding only a decoupled checkpoint, the card's three commands run as written: each verb
    finds its input where the previous one put it; dynamic INT8 needs no calibration file."""

    from dtx.model.decouple import decouple
    from tiny_models import build_tiny

    model = build_tiny("bert", "qa", tmp_path / "model", positions=256)
    work = tmp_path / "work"
    work.mkdir()
    decouple(model, work / "ckpt", split=2, compress=2, max_question_len=32, max_passage_len=150)
    monkeypatch.chdir(work)
    runner = CliRunner()
    for gap in (["build-engine", "--int8"], ["bench"]):  # nothing to find yet: one line naming the fix
        r = runner.invoke(main, gap)
        assert r.exit_code != 0 and "no dtx" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    for args in (["export", "ckpt/"], ["build-engine", "--int8"], ["bench", "--seq-q", "32", "--seq-p", "150", "--runs", "3"]):
        r = runner.invoke(main, args)
        assert r.exit_code == 0, (args, r.output)
    assert sorted(p.name for p in work.iterdir()) == ["ckpt", "ckpt-onnx", "ckpt-onnx-ort-int8"]
    assert "engine: ckpt-onnx-ort-int8" in r.output and "dec p50 ms" in r.output and "coupled p50 ms" in r.output and "speed-up" in r.output
    m = read_engine_manifest(work / "ckpt-onnx-ort-int8")
    assert m.int8_mode == "dynamic" and "random-token pairs of 32 + 150 tokens (no --calib given)" in m.verification["source"]
    assert 0 < m.verification["decoupled"]["pairs"] and m.served == ServedShape(20, 32, 150)
    # a second engine (not a card command: its drift on 24 pairs, not 500, is enough): bench must now be told which
    assert runner.invoke(main, ["build-engine", "--fp16", "--drift-pairs", "24"]).exit_code == 0
    r = runner.invoke(main, ["bench"])
    assert r.exit_code != 0 and "several dtx engines" in r.output and "ckpt-onnx-ort-fp16" in r.output
