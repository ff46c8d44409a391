"""SmoothQuant-style smoothing for dynamic INT8: move activation outliers into the weights, post-training.

Why: dynamic INT8 quantizes each MatMul's activation per tensor at run time, so one outlier channel
(the LayerNorm outputs of BERT-like encoders carry a few, many times the rest) sets the step for
every channel and the others keep few of their 8 bits. Weights are quantized per output channel
and have room. SmoothQuant (Xiao et al., 2023) divides input channel j of the activation by
s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) and multiplies row j of the weight by s_j: in float the
product is unchanged; the activation's range shrinks and the weight takes the difficulty over.

SmoothQuant folds 1/s into the LayerNorm before the MatMul. dtx's encoders are post-LN: that
LayerNorm's output is also the residual stream, so folding would change the residual. The division
is instead one explicit Mul per activation tensor, shared by every MatMul that reads it (Q, K and V
read one), before those MatMuls only: exact in float, one elementwise op per activation. The scales
come from the fp32 graph run on real calibration pairs, `max|X_j|` over every token of every feed.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from dtx.engines.transforms import output_matmuls


@dataclass(frozen=True)
class SmoothGroup:
    """One activation tensor and the weight MatMuls that read it (they share its smoothing scales)."""

    activation: str
    matmuls: tuple[str, ...]


def smoothing_groups(model: onnx.ModelProto, exclude: set[str]) -> list[SmoothGroup]:
    """Activations read by MatMuls with a 2-D weight initializer that INT8 quantizes (not in `exclude`): what can be smoothed.
    A weight read by more than one node is left alone (scaling its rows would change the other reader)."""
    weights = {t.name: t for t in model.graph.initializer if len(t.dims) == 2}
    readers = collections.Counter(i for n in model.graph.node for i in n.input)
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.name and n.name not in exclude and n.input[1] in weights and readers[n.input[1]] == 1 and n.input[0] not in weights:
            groups[n.input[0]].append(n.name)
    return [SmoothGroup(a, tuple(m)) for a, m in groups.items()]


def activation_absmax(model: onnx.ModelProto, activations: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |x| of each channel (last axis) of each named activation, over every token of every feed, from `model` in float."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph_outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(a, onnx.TensorProto.FLOAT, None) for a in activations if a not in graph_outputs)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    out: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(activations, session.run(activations, feed)):
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            out[name] = np.maximum(out[name], peak) if name in out else peak
    return out


def smoothing_scales(act_absmax: np.ndarray, weight_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^alpha / max|W_j|^(1 - alpha); 1 where a channel never fires or has no weight (nothing to move)."""
    a = act_absmax.astype(np.float64)
    w = weight_absmax.astype(np.float64)
    s = np.ones_like(a)
    live = (a > 0) & (w > 0)
    s[live] = a[live] ** alpha / w[live] ** (1 - alpha)
    return s.astype(np.float32)


def _outlier_ratio(absmax: np.ndarray) -> float:
    """How far the largest channel sits above the typical one: max / median of the per-channel max|x|."""
    median = float(np.median(absmax))
    return float(absmax.max() / median) if median > 0 else 0.0


def smooth_model(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], alpha: float, keep_float: list[str] | None = None) -> tuple[onnx.ModelProto, dict]:
    """`model` with every quantizable MatMul's activation smoothed (a shared Mul by 1/s) and its weight rows scaled by s.

    The output MatMuls and `keep_float` stay float in INT8, so they are not smoothed. Returns the new
    model and a record: alpha, how many activations and MatMuls, and the median outlier ratio
    (max / median channel peak) of the smoothed activations before and after.
    """
    smoothed = onnx.ModelProto()
    smoothed.CopyFrom(model)
    groups = smoothing_groups(smoothed, set(output_matmuls(smoothed)) | set(keep_float or []))
    peaks = activation_absmax(model, [g.activation for g in groups], feeds)
    inits = {t.name: t for t in smoothed.graph.initializer}
    nodes = {n.name: n for n in smoothed.graph.node}
    before, after, muls = [], [], {}
    for g in groups:
        weights = [numpy_helper.to_array(inits[nodes[m].input[1]]) for m in g.matmuls]
        s = smoothing_scales(peaks[g.activation], np.max([np.abs(w).max(axis=1) for w in weights], axis=0), alpha)
        inv = f"{g.activation}.smooth_inv"
        smoothed.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
        out = f"{g.activation}.smoothed"
        muls[g.activation] = onnx.helper.make_node("Mul", [g.activation, inv], [out], name=f"{g.activation}.smooth")
        for m, w in zip(g.matmuls, weights):
            inits[nodes[m].input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), nodes[m].input[1]))
            nodes[m].input[0] = out
        before.append(_outlier_ratio(peaks[g.activation]))
        after.append(_outlier_ratio(peaks[g.activation] / s))
    _insert_after_producers(smoothed.graph, muls)
    record = {"alpha": alpha, "activations": len(groups), "matmuls": sum(len(g.matmuls) for g in groups), "calibration_feeds": len(feeds),
              "median_outlier_ratio_before": float(np.median(before)) if before else None, "median_outlier_ratio_after": float(np.median(after)) if after else None}  # fmt: skip
    return smoothed, record


def _insert_after_producers(graph: onnx.GraphProto, muls: dict[str, onnx.NodeProto]) -> None:
    """Place each Mul (keyed by the activation it reads) right after the node that makes that activation,
    or first where the activation is a graph input: the node list stays topologically sorted."""
    ordered = [muls[i.name] for i in graph.input if i.name in muls]
    for n in graph.node:
        ordered.append(n)
        ordered += [muls[o] for o in n.output if o in muls]
    del graph.node[:]
    graph.node.extend(ordered)
