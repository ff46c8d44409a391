"""Engine bars: fp32 ORT parity under uneven padding, fused-op counts, INT8/FP16 builds, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dtx.cli import main
from dtx.engines import load_engine
from dtx.engines.build import BuildOptions, build_engine
from dtx.engines.manifest import EngineError
from dtx.engines.runner import OrtRunner
from dtx.engines.tensorrt import ServeShape, check_built_with, profile_shapes
from dtx.engines.transforms import qdq_zero_points
from dtx.engines.manifest import read_engine_manifest
from dtx.export.manifest import read_manifest
from dtx.export.spec import GRAPHS, graph_specs
from dtx.model.samples import random_pairs
from tiny_models import TINY_ARCHS


def reference(export_dir):
    m = read_manifest(export_dir)
    return OrtRunner({g: export_dir / f"{g}.onnx" for g in GRAPHS}, m.outputs), m.segmenter()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_fp32_engine_matches_export_with_uneven_padding(arch, engine):
    export_dir, engine_dir = engine(arch)
    ref, seg = reference(export_dir)
    rng = np.random.default_rng(11)
    with load_engine(engine_dir, export_dir) as runner:
        for b, lq, lp, bq in ((5, 24, 40, 1), (5, 24, 40, 5), (3, 30, 17, 3)):
            pb = random_pairs(seg, rng, b, lq, lp, bq=bq)
            assert len(set(pb.question.attention_mask.sum(1))) > 1 or bq == 1
            got, want = runner.decoupled(pb.question, pb.passage), ref.decoupled(pb.question, pb.passage)
            for k in want:
                assert np.abs(got[k] - want[k]).max() < 1e-4, (k, b, bq)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_padded_question_gives_the_unpadded_answer(arch, engine):
    """An optimiser that turned the concatenated mask into per-row lengths would fail here."""
    export_dir, engine_dir = engine(arch)
    _, seg = reference(export_dir)
    q = seg.question("who was the first king of the city")
    ps = seg.pad([seg.passage("the first king of the city was in paris .")[0], seg.passage("a river runs north .")[0]])
    with load_engine(engine_dir) as runner:
        tight = seg.pad([q])
        loose = seg.pad([q], len(q) + 9)
        a = runner.decoupled(tight, ps)
        b = runner.decoupled(loose, ps)
    n = len(q)
    for k in a:
        real_a = np.concatenate([a[k][:, :n], a[k][:, n:]], 1)
        real_b = np.concatenate([b[k][:, :n], b[k][:, n + 9 :]], 1)
        assert np.abs(real_a - real_b).max() < 1e-4


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_fused_op_counts(arch, engine):
    _, engine_dir = engine(arch)
    fused = read_engine_manifest(engine_dir).reports["fused_ops"]
    layers = {"input": 2, "cross": 2, "coupled": 4}
    for graph, n in layers.items():
        assert fused[graph].get("MultiHeadAttention", 0) + fused[graph].get("Attention", 0) == n, (graph, fused[graph])
        assert fused[graph].get("SkipLayerNormalization", 0) >= n
        assert fused[graph].get("BiasGelu", 0) + fused[graph].get("FastGelu", 0) == n


def test_verbose_prints_fused_ops(exported, tmp_path):
    _, export_dir = exported()
    result = CliRunner().invoke(main, ["build-engine", str(export_dir), "-o", str(tmp_path / "e"), "--verbose"])
    assert result.exit_code == 0, result.output
    assert "MultiHeadAttention" in result.output and "SkipLayerNormalization" in result.output


def test_int8_dynamic_reports_drift(engine, disfl_qa):
    _, engine_dir = engine("bert", "int8", str(disfl_qa))
    m = read_engine_manifest(engine_dir)
    assert m.int8_mode == "dynamic" and m.verification["kind"] == "drift"
    assert all("MatMulInteger" in m.reports["fused_ops"][g] for g in GRAPHS)
    for path in ("decoupled", "coupled"):
        d = m.verification[path]  # int8 moves the logits a little (observed ~0.03 here), a broken scale moves them by whole units
        assert d["pairs"] == 24 + m.served.candidates and 0 < d["max_abs"] < 0.25 and d["agreement"] >= 0.75


def test_int8_keeps_the_output_matmuls_float(engine, exported, disfl_qa):
    """The head (cross, coupled) and the compressor (input) stay float MatMuls; the layers' MatMuls become MatMulInteger."""
    from dtx.engines.transforms import fuse_for_ort, output_matmuls

    export_dir = exported("bert", 2, 2)[1]
    _, engine_dir = engine("bert", "int8", str(disfl_qa))
    m = read_engine_manifest(engine_dir).reports
    for g in GRAPHS:
        fused = engine_dir.parent / f"{g}-fused-check.onnx"
        fuse_for_ort(export_dir / f"{g}.onnx", fused)
        heads = output_matmuls(onnx.load(str(fused)))
        assert heads and sorted(heads) == m["int8_float_matmuls"][g]
        built = {n.name: n.op_type for n in onnx.load(str(engine_dir / f"{g}.onnx")).graph.node}
        assert all(built.get(h) == "MatMul" for h in heads), f"{g}: an output MatMul was quantized"
        assert m["fused_ops"][g].get("MatMulInteger", 0) > 0


def test_int8_keeps_the_most_sensitive_matmuls_float(engine, disfl_qa):
    """--int8-keep-float 2: per graph, the two MatMuls whose INT8 error on real pairs is worst stay float, besides the head."""

    _, plain_dir = engine("bert", "int8", str(disfl_qa))
    _, engine_dir = engine("bert", "int8", str(disfl_qa), int8_keep_float=2)
    plain = read_engine_manifest(plain_dir).reports["int8_float_matmuls"]
    kept = read_engine_manifest(engine_dir).reports["int8_float_matmuls"]
    for g in GRAPHS:
        assert set(plain[g]) < set(kept[g]) and len(kept[g]) == len(plain[g]) + 2
        built = {n.name: n.op_type for n in onnx.load(str(engine_dir / f"{g}.onnx")).graph.node}
        assert all(built.get(name) == "MatMul" for name in kept[g])


def test_int8_qdq_is_symmetric(engine, disfl_qa):
    _, engine_dir = engine("bert", "int8", str(disfl_qa), int8_mode="qdq")
    for g in GRAPHS:
        zps = qdq_zero_points(onnx.load(str(engine_dir / f"{g}.onnx")))
        assert zps, f"{g} has no Q/DQ pairs"
        assert all(dtype == onnx.TensorProto.INT8 and not any(values) for _, dtype, values in zps)


def test_fp16_engine_close_to_fp32(engine, disfl_qa):
    _, engine_dir = engine("bert", "fp16", str(disfl_qa))
    v = read_engine_manifest(engine_dir).verification
    assert v["kind"] == "drift" and v["decoupled"]["max_abs"] < 2e-2 and v["coupled"]["max_abs"] < 2e-2
    model = onnx.load(str(engine_dir / "coupled.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer), "weights are not float16"
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    for n in model.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert all(types.get(i) == onnx.TensorProto.FLOAT for i in n.input if i), f"{n.op_type} must stay float32"


def assert_engine_matches_export(engine_dir, export_dir, tol: float, calls: int = 1) -> None:
    """The engine's decoupled outputs vs the fp32 export on one padded batch (bq = 1)."""
    ref, seg = reference(export_dir)
    pb = random_pairs(seg, np.random.default_rng(5), 4, 16, 30, bq=1)
    with load_engine(engine_dir) as runner:
        for _ in range(calls):  # a second call replays captured CUDA graphs where there are any
            got = runner.decoupled(pb.question, pb.passage)
    want = ref.decoupled(pb.question, pb.passage)
    for k in want:
        assert np.abs(got[k] - want[k]).max() < tol, k


def test_torch_backend_matches_export(exported, tmp_path):
    _, export_dir = exported()
    build_engine(export_dir, tmp_path / "t", BuildOptions(backend="torch"), progress=False)
    assert_engine_matches_export(tmp_path / "t", export_dir, 1e-4)


@pytest.mark.parametrize("task", ["qa", "pair"])
def test_shape_buckets_change_no_output(exported, task):
    """Sequence axes padded up to CUDA-graph buckets and cut back: the same outputs as the unpadded call (checked on CPU)."""
    from dtx.engines.torch_backend import TorchRunner

    ckpt_dir, export_dir = exported("bert", 2, 2, task)
    export = read_manifest(export_dir)
    outputs = {g: [t.name for t in s.outputs] for g, s in graph_specs(task, export.rep_dim, export.decoupling.num_labels).items()}
    plain, padded = TorchRunner(ckpt_dir, outputs), TorchRunner(ckpt_dir, outputs, buckets=True)
    seg = export.segmenter()
    rng = np.random.default_rng(4)
    for b, lq, lp, bq in ((3, 9, 21, 1), (4, 16, 32, 4), (2, 5, 17, 2)):
        pb = random_pairs(seg, rng, b, lq, lp, bq=bq)
        for got, want in ((padded.decoupled(pb.question, pb.passage), plain.decoupled(pb.question, pb.passage)), (padded.coupled(pb.coupled()), plain.coupled(pb.coupled()))):
            assert got.keys() == want.keys()
            for k in want:
                assert got[k].shape == want[k].shape and np.abs(got[k] - want[k]).max() < 1e-5, (k, b, lq, lp)


def test_aoti_engine_equals_the_export_on_ragged_batches(exported, tmp_path):
    """AOTInductor packages (CPU here), dynamic batch and sequence axes: outputs within 1e-4 of the export's,
    on shapes never seen at compile time, with every row padded differently; and refused on another machine."""
    _, export_dir = exported()
    m = build_engine(export_dir, tmp_path / "aoti", BuildOptions(backend="aoti"), progress=False)
    assert m.backend == "aoti" and m.backend_info["device"] == "cpu" and m.verification["kind"] == "parity" and m.verification["worst_max_abs"] < 1e-4
    ref, seg = reference(export_dir)
    rng = np.random.default_rng(11)
    with load_engine(tmp_path / "aoti") as runner:
        for b, lq, lp, bq in ((5, 9, 27, 1), (5, 9, 27, 5), (2, 16, 32, 2), (7, 3, 13, 1)):
            pb = random_pairs(seg, rng, b, lq, lp, bq=bq)
            got, want = runner.decoupled(pb.question, pb.passage), ref.decoupled(pb.question, pb.passage)
            assert all(np.abs(got[k] - want[k]).max() < 1e-4 for k in want), (b, lq, lp, bq)
            c = pb.coupled()
            got, want = runner.coupled(c), ref.coupled(c)
            real = c.attention_mask.astype(bool)
            assert all(np.abs(got[k] - want[k])[real].max() < 1e-4 for k in want), (b, lq, lp, bq)
        assert_served_packages_answer(runner, m, ref, seg, 1e-4)
    manifest = json.loads((tmp_path / "aoti" / "engine.json").read_text())
    manifest["aoti"]["isa"] = "neon"  # as if compiled on another CPU
    (tmp_path / "aoti" / "engine.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match="compiled for isa 'neon'.*rebuild it here"):
        load_engine(tmp_path / "aoti")
    assert "no int8 path" in cli_error(["build-engine", str(export_dir), "--backend", "torch", "--int8", "--calib", str(export_dir / "manifest.json"), "-o", str(tmp_path / "x")])


def assert_served_packages_answer(runner, m, ref, seg, tolerance: float) -> None:
    """A query of the served shape, its question and passages shorter than the package's (padded up to it), is answered
    by the packages compiled for that shape - the dynamic ones are taken away - and equals the export's answer."""
    s = m.served
    assert {"cross.served", "coupled.served"} <= set(m.graphs)
    runner.packages.pop("cross"), runner.packages.pop("coupled")
    pb = random_pairs(seg, np.random.default_rng(5), s.candidates, s.seq_q - 3, s.seq_p - 5, bq=1)
    got, want = runner.decoupled(pb.question, pb.passage), ref.decoupled(pb.question, pb.passage)
    assert all(got[k].shape == want[k].shape and np.abs(got[k] - want[k]).max() < tolerance * max(1.0, np.abs(want[k]).max()) for k in want)
    c = pb.coupled()
    got, want = runner.coupled(c), ref.coupled(c)
    real = c.attention_mask.astype(bool)
    assert all(got[k].shape == want[k].shape and np.abs(got[k] - want[k])[real].max() < tolerance * max(1.0, np.abs(want[k]).max()) for k in want)


def package_ops(package, op: str) -> int:
    """How often the generated C++ inside an AOTInductor package calls `op` (the kernels it really runs)."""
    import zipfile

    with zipfile.ZipFile(package) as z:
        return sum(z.read(n).decode().count(op) for n in z.namelist() if n.endswith("wrapper.cpp"))


def test_aoti_int8_engine_runs_int8_gemms_close_to_the_export(exported, disfl_qa, tmp_path):
    """PT2E static INT8 through AOTInductor: every Linear of the three packages is a oneDNN int8 GEMM (calibrated on
    real pairs); the engine runs shapes and paddings never seen at compile time, and stays close to the fp32 export:
    drift measured at build on real pairs, and again here on ragged random batches."""
    _, export_dir = exported()
    m = build_engine(export_dir, tmp_path / "aoti8", BuildOptions(backend="aoti", precision="int8", calib=str(disfl_qa), calib_pairs=16, drift_pairs=24), progress=False)
    assert m.backend == "aoti" and m.precision == "int8" and m.int8_mode == "qdq" and m.verification["kind"] == "drift"
    for path in ("decoupled", "coupled"):
        d = m.verification[path]  # a wrong scale moves logits by whole units; int8 by a few hundredths
        assert d["pairs"] == 24 + m.served.candidates and 0 < d["max_abs"] < 0.25 and d["agreement"] >= 0.75, (path, d)
    for graph, layers in {"input": 2, "cross": 2, "coupled": 4}.items():  # every layer's six Linears at least
        assert package_ops(tmp_path / "aoti8" / m.graphs[graph], "aoti_torch_cpu__qlinear_pointwise") >= 6 * layers, graph
    ref, seg = reference(export_dir)
    rng = np.random.default_rng(12)
    with load_engine(tmp_path / "aoti8") as runner:
        for b, lq, lp, bq in ((5, 9, 27, 1), (3, 16, 40, 3)):
            pb = random_pairs(seg, rng, b, lq, lp, bq=bq)
            got, want = runner.decoupled(pb.question, pb.passage), ref.decoupled(pb.question, pb.passage)
            for k in want:
                err = np.abs(got[k] - want[k]).max()
                assert 0 < err < 0.25 * np.abs(want[k]).max(), (k, b, lq, lp, err)
        assert_served_packages_answer(runner, m, ref, seg, 0.25)


def test_known_import_noise_is_dropped_and_nothing_else():
    """torchao's import logs a line per CUDA kernel a CPU cannot load (dtx.KNOWN_NOISE): those lines are dropped where
    dtx is imported, other warnings of the same loggers still pass (the loggers' own filters, whatever level torch's
    logging setup gives them)."""
    import logging

    import dtx

    for name, text in dtx.KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        record = lambda msg: logger.makeRecord(name, logging.WARNING, __file__, 0, msg, (), None)  # noqa: E731
        assert not logger.filter(record(f"{text}something")) and logger.filter(record("a real problem")), name


def test_aoti_int8_refusals(exported, tmp_path, monkeypatch):
    """Static INT8 needs real texts to calibrate on, a CPU, and torchao: each missing one is one line before any work."""
    import builtins

    _, export_dir = exported()
    out = str(tmp_path / "x")
    assert "--calib" in cli_error(["build-engine", str(export_dir), "--backend", "aoti", "--int8", "-o", out])
    assert "runs INT8 only as qdq" in cli_error(["build-engine", str(export_dir), "--backend", "aoti", "--int8", "--int8-mode", "dynamic", "--calib", str(export_dir / "manifest.json"), "-o", out])
    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    message = cli_error(["build-engine", str(export_dir), "--backend", "aoti", "--int8", "--calib", str(export_dir / "manifest.json"), "-o", out])
    assert "pip install torchao==" in message and not (tmp_path / "x").exists()


def test_torch_engine_over_a_replaced_checkpoint_is_refused(model_dir, exported, tmp_path):
    """The torch backend runs the checkpoint: one replaced after the export is refused at build, nothing written."""
    from dtx.model.decouple import decouple

    # an export of tmp_path/ckpt without exporting again: the session's export of the same weights, naming a copy of its checkpoint
    src_ckpt, src_export = exported()
    shutil.copytree(src_ckpt, tmp_path / "ckpt")
    shutil.copytree(src_export, tmp_path / "onnx")
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    manifest["checkpoint"]["path"] = str((tmp_path / "ckpt").resolve())
    (tmp_path / "onnx" / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(tmp_path / "onnx").checkpoint.path == (tmp_path / "ckpt").resolve()
    decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=2, compress=2, max_question_len=32, seed=7, overwrite=True)
    assert "other weights" in cli_error(["build-engine", str(tmp_path / "onnx"), "--backend", "torch", "-o", str(tmp_path / "t")])
    assert not (tmp_path / "t").exists()


def cli_error(args) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
    return lines[0]


def test_int8_without_calibration(exported, tmp_path):
    """Dynamic INT8 needs no calibration file (drift on random-token pairs, said so); the modes that calibrate refuse to guess."""
    _, export_dir = exported()
    m = build_engine(export_dir, tmp_path / "e", BuildOptions(precision="int8", drift_pairs=16), progress=False)
    assert m.int8_mode == "dynamic" and "random-token pairs" in m.verification["source"] and m.verification["coupled"]["pairs"] == 16 + m.served.candidates
    assert "--calib" in cli_error(["build-engine", str(export_dir), "--int8", "--int8-mode", "qdq", "-o", str(tmp_path / "q")])
    assert "--calib" in cli_error(["build-engine", str(export_dir), "--int8", "--int8-keep-float", "2", "-o", str(tmp_path / "k")])
    assert "--calib" in cli_error(["build-engine", str(export_dir), "--int8", "--int8-smooth", "0.5", "-o", str(tmp_path / "k")])
    assert "does not exist" in cli_error(["build-engine", str(export_dir), "--int8", "--calib", str(tmp_path / "none.jsonl")])
    assert not (tmp_path / "q").exists() and not (tmp_path / "k").exists()


def test_trt_without_tensorrt_is_one_line(exported, tmp_path):
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the GPU test covers it")
    except ImportError:
        pass
    _, export_dir = exported()
    assert "TensorRT" in cli_error(["build-engine", str(export_dir), "--backend", "trt", "-o", str(tmp_path / "e")])


def test_mismatched_engine_and_export(engine, exported):
    _, engine_dir = engine("bert")
    _, other_export = exported("bert", 3, 2)
    with pytest.raises(EngineError, match="built from export"):
        load_engine(engine_dir, other_export)


def test_tampered_engine_file(engine, tmp_path):
    _, engine_dir = engine("bert")
    bad = tmp_path / "bad"
    shutil.copytree(engine_dir, bad)
    data = bytearray((bad / "cross.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bad / "cross.onnx").write_bytes(bytes(data))
    with pytest.raises(EngineError, match="sha256"):
        load_engine(bad)
    with pytest.raises(EngineError, match="not a dtx engine"):
        load_engine(tmp_path)


def test_tensorrt_profiles_from_serving_shape():
    specs = graph_specs("qa", 96, 2)
    shape = ServeShape(batch=20, seq_q=32, seq_p=150, max_q=64, max_p=448)
    cross = profile_shapes(specs["cross"], shape)
    assert cross["q_hidden"] == ((1, 1, 96), (1, 32, 96), (20, 64, 96))
    assert cross["p_hidden"] == ((1, 1, 96), (20, 150, 96), (20, 448, 96))
    assert cross["p_mask"] == ((1, 1), (20, 150), (20, 448))
    coupled = profile_shapes(specs["coupled"], shape)
    assert coupled["input_ids"] == ((1, 1), (20, 182), (20, 512))
    inp = profile_shapes(specs["input"], shape)
    assert inp["attention_mask"] == ((1, 1), (20, 150), (20, 448))
    for profile in (cross, coupled, inp):
        for lo, opt, hi in profile.values():
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi))


def test_tensorrt_plan_from_another_machine_is_refused():
    here = {"tensorrt": "10.9.0", "compute_capability": "9.0", "gpu": "H100"}
    check_built_with({**here, "gpu": "H100 NVL"}, here)  # same version and architecture: fine
    with pytest.raises(EngineError, match="tensorrt 10.3.0, this machine has 10.9.0"):
        check_built_with({**here, "tensorrt": "10.3.0"}, here)
    with pytest.raises(EngineError, match="compute_capability 8.0"):
        check_built_with({**here, "compute_capability": "8.0"}, here)


def test_served_shape_fits_the_window_and_warms_up(exported, tmp_path):
    """The served shape CUDA graphs capture at load lies inside the checkpoint's windows (a 150-token default
    against a 96-token window once indexed past the position table on the GPU); an explicit longer one is refused."""

    from dtx.engines.torch_backend import TorchRunner

    _, export_dir = exported()
    m = build_engine(export_dir, tmp_path / "t", BuildOptions(backend="torch"), progress=False)
    d, shape = m.decoupling, m.served
    assert (shape.seq_q, shape.seq_p) == (min(32, d.max_question_len), min(150, d.max_passage_len))
    assert m.verification["kind"] == "parity" and m.verification["worst_max_abs"] < 1e-4  # the torch engine is verified too
    runner = TorchRunner(m.checkpoint.path, dict(m.outputs), buckets=True)
    runner.warm_up(shape.candidates, shape.seq_q, shape.seq_p)  # what a CUDA engine captures at load, bucketed
    with pytest.raises(EngineError, match="--seq-p .* window"):
        build_engine(export_dir, tmp_path / "u", BuildOptions(backend="torch", seq_p=d.max_passage_len + 1), progress=False)


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(_no_gpu(), reason="no CUDA GPU on this machine")


@pytest.mark.gpu
@needs_gpu
def test_torch_cuda_fp16_cuda_graphs(exported, tmp_path):
    _, export_dir = exported()
    build_engine(export_dir, tmp_path / "t", BuildOptions(backend="torch", device="cuda", precision="fp16"), progress=False)
    assert_engine_matches_export(tmp_path / "t", export_dir, 2e-2, calls=2)


@pytest.mark.gpu
@needs_gpu
def test_aoti_cuda_fp16_engine(exported, tmp_path):
    _, export_dir = exported()
    m = build_engine(export_dir, tmp_path / "aoti", BuildOptions(backend="aoti", device="cuda", precision="fp16"), progress=False)
    assert m.backend_info["device"] == "cuda" and m.backend_info["compute_capability"] and m.verification["kind"] == "drift"
    assert_engine_matches_export(tmp_path / "aoti", export_dir, 2e-2)


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_engine_runs(exported, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    _, export_dir = exported()
    build_engine(export_dir, tmp_path / "trt", BuildOptions(backend="trt", precision="fp16", batch=4, seq_q=16, seq_p=30), progress=False)
    assert_engine_matches_export(tmp_path / "trt", export_dir, 2e-2)


def test_an_engine_whose_export_copy_is_from_another_export_is_refused(engine, exported, tmp_path):
    """engine.json names the export it was built from; a copied-in export.json of another export is refused on load."""
    import shutil

    _, engine_dir = engine()
    _, other = exported("bert", 3, 2)
    bad = tmp_path / "bad"
    shutil.copytree(engine_dir, bad)
    shutil.copy(other / "manifest.json", bad / "export.json")
    with pytest.raises(EngineError, match="was built from"):
        load_engine(bad)
    m = read_engine_manifest(engine_dir)
    assert m.export.export_id == m.export_id and m.export.path == engine_dir and m.verification["kind"] == "parity"
