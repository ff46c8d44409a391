"""SmoothQuant-style smoothing (dtx.engines.smooth): exact in float, and it is what cuts INT8 error where an activation has outlier channels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from dtx.engines.manifest import read_engine_manifest
from dtx.engines.smooth import smooth_model, smoothing_scales
from dtx.engines.transforms import quantize_dynamic_int8
from dtx.export.spec import GRAPHS

WIDTH, HIDDEN = 32, 48


def two_layer_graph(rng: np.random.Generator) -> onnx.ModelProto:
    """x -> MatMul w1 (quantized) -> Relu -> MatMul w2 (the head: output MatMul, kept float); x is also a second output,
    as a residual stream is read beside the MatMuls - smoothing must leave that reader alone."""
    w1 = numpy_helper.from_array(rng.normal(0, 0.2, (WIDTH, HIDDEN)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="layer"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="head"), helper.make_node("Identity", ["x"], ["skip"], name="residual")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]), helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["n", WIDTH])], [w1, w2])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def outlier_inputs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Activations whose channels 3 and 17 run ~40x the rest, as a few LayerNorm-output channels of BERT do."""
    x = rng.normal(0, 1, (n, WIDTH)).astype(np.float32)
    x[:, [3, 17]] *= 40
    return {"x": x}


def run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def test_scales_follow_the_formula_and_spare_dead_channels():
    s = smoothing_scales(np.array([4.0, 0.0, 9.0]), np.array([1.0, 2.0, 0.25]), 0.5)
    assert np.allclose(s, [2.0, 1.0, 6.0])  # sqrt(4) / sqrt(1); a channel that never fires keeps 1; sqrt(9) / sqrt(0.25)
    assert np.allclose(smoothing_scales(np.array([8.0]), np.array([2.0]), 1.0), [8.0]) and np.allclose(smoothing_scales(np.array([8.0]), np.array([2.0]), 0.0), [0.5])


def test_smoothing_is_exact_in_float_and_leaves_other_readers_and_the_head_alone():
    rng = np.random.default_rng(0)
    model = two_layer_graph(rng)
    smoothed, record = smooth_model(model, [outlier_inputs(rng, 64) for _ in range(4)], 0.5)
    assert record["activations"] == 1 and record["matmuls"] == 1  # the head is an output MatMul: INT8 keeps it float, nothing to smooth
    assert record["median_outlier_ratio_after"] < record["median_outlier_ratio_before"] / 3
    onnx.checker.check_model(smoothed)
    for _ in range(3):  # fresh inputs, not the calibration ones
        feed = outlier_inputs(rng, 32)
        (y, skip), (y_s, skip_s) = run(model, feed), run(smoothed, feed)
        assert np.abs(y_s - y).max() <= 1e-5 * np.abs(y).max()
        assert np.array_equal(skip_s, feed["x"]) and np.array_equal(skip, skip_s)


def test_smoothing_cuts_the_int8_error_of_an_outlier_activation(tmp_path):
    rng = np.random.default_rng(1)
    model = two_layer_graph(rng)
    smoothed, _ = smooth_model(model, [outlier_inputs(rng, 64) for _ in range(4)], 0.5)
    onnx.save(model, tmp_path / "plain.onnx")
    onnx.save(smoothed, tmp_path / "smooth.onnx")
    assert quantize_dynamic_int8(tmp_path / "plain.onnx", tmp_path / "plain-int8.onnx") == ["head"]
    assert quantize_dynamic_int8(tmp_path / "smooth.onnx", tmp_path / "smooth-int8.onnx") == ["head"]
    errors = {}
    feeds = [outlier_inputs(rng, 256) for _ in range(4)]
    for name in ("plain", "smooth"):
        q = onnx.load(str(tmp_path / f"{name}-int8.onnx"))
        assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in q.graph.node)
        errors[name] = np.mean([np.abs(run(q, f)[0] - run(model, f)[0]).mean() / np.abs(run(model, f)[0]).mean() for f in feeds])
    assert errors["smooth"] < errors["plain"] / 2, errors


def test_smoothed_engine_records_what_it_did(engine, disfl_qa):
    """--int8-smooth on a real build: every graph smoothed (scales from --calib pairs), outliers reduced, drift as small as plain INT8's."""
    _, plain_dir = engine("bert", "int8", str(disfl_qa))
    _, engine_dir = engine("bert", "int8", str(disfl_qa), int8_smooth=0.5)
    plain, smoothed = read_engine_manifest(plain_dir), read_engine_manifest(engine_dir)
    assert plain.reports["int8_smooth"] is None
    for g in GRAPHS:
        rec = smoothed.reports["int8_smooth"][g]
        assert rec["alpha"] == 0.5 and rec["matmuls"] > 0 and rec["median_outlier_ratio_after"] <= rec["median_outlier_ratio_before"]
        built = onnx.load(str(engine_dir / f"{g}.onnx"))
        assert sum(n.op_type == "Mul" and n.name.endswith(".smooth") for n in built.graph.node) == rec["activations"]
        assert smoothed.reports["int8_float_matmuls"][g] == plain.reports["int8_float_matmuls"][g]
    for path in ("decoupled", "coupled"):
        d = smoothed.verification[path]
        assert d["pairs"] == 24 + smoothed.served.candidates and 0 < d["max_abs"] < 0.25 and d["agreement"] >= 0.75
