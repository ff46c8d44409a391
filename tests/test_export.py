"""Export bars: parity of all three graphs for every architecture, unseen shapes, --check, atomicity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from dtx.cli import main
from dtx.errors import DtxError
from dtx.export.check import ExportCheckError, check_export
from dtx.export.exporter import ParityError, export_checkpoint
from dtx.export.parity import measure
from dtx.model.checkpoint import load_checkpoint
from dtx.model.decouple import decouple
from tiny_models import TINY_ARCHS


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize("split,compress", [(0, 1), (2, 2), (4, 4), (4, 1)])
def test_export_parity_every_architecture(arch, split, compress, exported):
    ckpt_dir, out = exported(arch, split, compress)
    manifest = check_export(out, ckpt_dir)
    results = manifest.parity["results"]
    assert {r["check"] for r in results} == {"input", "cross", "decoupled", "coupled"}
    assert all(r["passed"] and r["max_abs"] <= 1e-4 for r in results)
    assert any("bq=1" in r["shape"] and "b=4" in r["shape"] for r in results), "one question against many passages"
    assert manifest.rep_dim == 32 // compress and manifest.decoupling.split == split


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_pair_task_exports(arch, exported):
    _, out = exported(arch, 2, 2, "pair")
    m = check_export(out)
    assert list(m.graphs["cross"].outputs) == [{"name": "logits", "dtype": "float32", "shape": ["b", 3]}] and m.labels


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_unseen_shapes_stay_within_tolerance(arch, exported):
    ckpt_dir, out = exported(arch, 2, 2)
    ckpt = load_checkpoint(ckpt_dir)
    results = measure(out, ckpt.model, ckpt.teacher(), ckpt.segmenter(), [(1, 5, 7), (33, 12, 7), (2, 32, 90)], seed=123)
    worst = max(results, key=lambda r: r.max_abs)
    assert worst.passed, worst


def test_unseen_long_passage_on_real_model(model_dir, tmp_path_factory):
    """Passage length 300 (far beyond the 11 tokens traced) on the real all-MiniLM-L6-v2."""
    root = tmp_path_factory.mktemp("minilm")
    ckpt = decouple(model_dir("minilm"), root / "ckpt", split=3, compress=4, task="qa")
    out = root / "onnx"
    export_checkpoint(ckpt.path, out, progress=False, shapes=[(2, 16, 40)])
    results = measure(out, ckpt.model, ckpt.teacher(), ckpt.segmenter(), [(1, 32, 300), (33, 24, 7)], seed=7)
    worst = max(results, key=lambda r: r.max_abs)
    assert worst.passed, worst


def test_graphs_are_fusable_and_fp16_safe(exported):
    _, out = exported("bert", 2, 2)
    for name in ("input.onnx", "cross.onnx", "coupled.onnx"):
        model = onnx.load(str(out / name))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        ops = {n.op_type for n in model.graph.node}
        assert "LayerNormalization" in ops, f"{name} decomposes LayerNorm"
        assert not ops & {"If", "Loop"}, f"{name} has control flow"
        for inp in model.graph.input:
            dims = inp.type.tensor_type.shape.dim
            assert dims[0].dim_param and dims[1].dim_param, f"{name}:{inp.name} batch/sequence axes must be dynamic"
        tensors = [numpy_helper.to_array(t) for t in model.graph.initializer]
        tensors += [numpy_helper.to_array(a.t) for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
        for t in tensors:
            if t.dtype.kind == "f" and t.size:
                assert np.isfinite(t).all() and np.abs(t).max() < 65504, f"{name} has a constant that overflows float16"


def test_check_catches_truncation(exported, tmp_path):
    _, out = exported()
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = (bad / "cross.onnx").read_bytes()
    (bad / "cross.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportCheckError, match="truncated"):
        check_export(bad)


@pytest.mark.parametrize("other,needle", [((3, 2), "split 3"), ((2, 4), "rep_dim")])
def test_check_catches_a_cross_graph_from_another_export(exported, tmp_path, other, needle):
    _, out = exported("bert", 2, 2)
    _, other_out = exported("bert", *other)
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    shutil.copy(other_out / "cross.onnx", bad / "cross.onnx")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["cross.onnx"]["bytes"] = (bad / "cross.onnx").stat().st_size  # a careful forger
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportCheckError, match=needle):
        check_export(bad)


def test_check_catches_sha_mismatch(exported, tmp_path):
    _, out = exported()
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["input.onnx"]["sha256"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportCheckError, match="sha256"):
        check_export(bad)
    result = CliRunner().invoke(main, ["export", "--check", str(bad)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1 and "sha256" in result.output


def test_check_against_another_checkpoint(exported):
    _, out = exported("bert", 2, 2)
    other_ckpt, _ = exported("bert", 3, 2)
    with pytest.raises(ExportCheckError, match="other weights"):
        check_export(out, other_ckpt)


def test_failed_export_keeps_the_previous_one(exported, tmp_path, monkeypatch):
    ckpt_dir, out = exported()
    target = tmp_path / "onnx"
    shutil.copytree(out, target)
    before = (target / "manifest.json").read_text()
    written = []

    def write_graph(module, sample, spec, path, *a):  # the graphs are written (the session's, not traced again), then parity fails
        written.append(shutil.copy(out / spec.file, path))

    monkeypatch.setattr("dtx.export.exporter.export_graph", write_graph)
    monkeypatch.setattr("dtx.export.exporter.measure", lambda *a, **k: [_failing()])
    with pytest.raises(ParityError, match="Nothing was written"):
        export_checkpoint(ckpt_dir, target, progress=False, overwrite=True)
    assert len(written) == 3
    assert (target / "manifest.json").read_text() == before
    check_export(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp directory left behind"


def _failing():
    from dtx.export.parity import ParityResult

    return ParityResult("coupled", "b=1", "logits", 1.0, 1.0, 1e-4)


def test_reexport_needs_overwrite_and_never_loses_other_files(exported, tmp_path):
    ckpt_dir, out = exported()
    target = tmp_path / "onnx"
    shutil.copytree(out, target)  # an export of ckpt_dir is there (the session's, copied: one export fewer to trace)
    first = check_export(target, ckpt_dir)
    with pytest.raises(DtxError, match="already exists.*a dtx export.*--overwrite"):
        export_checkpoint(ckpt_dir, target, progress=False, shapes=[(2, 8, 8)])
    assert check_export(target).export_id == first.export_id, "a refused export must leave the old one as it was"
    second = export_checkpoint(ckpt_dir, target, progress=False, shapes=[(2, 8, 8)], overwrite=True)
    assert first.export_id != second.export_id and check_export(target).export_id == second.export_id
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DtxError, match="not part of its export.*notes.txt"):
        export_checkpoint(ckpt_dir, target, progress=False, shapes=[(2, 8, 8)], overwrite=True)
    assert (target / "notes.txt").read_text() == "mine" and check_export(target).export_id == second.export_id
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(DtxError, match="not a dtx export"):
        export_checkpoint(ckpt_dir, foreign, progress=False)
    assert (foreign / "cat.jpg").exists()


def test_cli_export_prints_parity_and_time(exported, tmp_path):
    ckpt_dir, _ = exported()
    result = CliRunner().invoke(main, ["export", str(ckpt_dir), "-o", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert "coupled" in result.output and "wrote" in result.output and " s (input" in result.output
    bad = CliRunner().invoke(main, ["export", str(ckpt_dir), "-o", str(tmp_path / "y"), "--opset", "16"])
    assert bad.exit_code == 2 and "--opset" in bad.output and "x>=17" in bad.output and len(bad.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda m: m.pop("rep_dim"), "no valid rep_dim"),
        (lambda m: m["model"].__setitem__("hidden_size", "32"), "no valid model.hidden_size"),
        (lambda m: m["graphs"].pop("cross"), "lists graphs"),
        (lambda m: m["checkpoint"].pop("weights_sha256"), "no valid checkpoint.weights_sha256"),
        (lambda m: m.__setitem__("format_version", 99), "format 1"),
    ],
)
def test_a_damaged_manifest_is_one_line_naming_the_field(exported, tmp_path, edit, needle):
    """The typed loader every module reads an export through: a missing or mistyped field is named, once."""
    _, out = exported()
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    edit(manifest)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    for args in (["export", "--check", str(bad)], ["build-engine", str(bad), "-o", str(tmp_path / "e")], ["eval", str(bad), "--data", str(bad / "manifest.json")]):
        result = CliRunner().invoke(main, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and needle in lines[0], (args, result.output)
    assert not (tmp_path / "e").exists()
