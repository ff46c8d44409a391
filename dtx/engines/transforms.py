"""Graph transforms that turn an fp32 export graph into what one backend and precision runs.

- ORT fusion: onnxscript's ORT rewriter fuses the dynamo-exported graphs into MultiHeadAttention
  (keeping the additive attention bias, so a padded question stays exact), SkipLayerNormalization
  and BiasGelu. These are ONNX Runtime contrib ops: TensorRT gets the unfused graph instead.
- FP16: weights and activations in float16 with LayerNorm, Softmax and the mask arithmetic kept
  in float32; graph inputs/outputs stay float32 so callers and caches do not change.
- INT8 dynamic (ORT CPU): MatMul weights int8 (per channel by default; dtx.model.int8 names the
  schemes), activations quantized on the fly (MatMulInteger): attention is fused (its activation
  x activation products stay float), LayerNorm / GELU / residual adds are not MatMuls, and the
  MatMul nearest each graph output (the QA / classification head, the compressor whose output is
  cached) stays float32, as FasterTransformer's INT8 mode 1 keeps BERT within 0.5 F1. ORT's
  quantizer turns Gemm (a Linear on a 2-D input: pooled [CLS] heads) into MatMul before it
  quantizes, so the graph is converted first and the output MatMuls found on what it quantizes;
  dtx.train.fake_quant computes the same MatMuls the same way in torch, for QAT.
- INT8 Q/DQ (TensorRT, and ORT for accuracy checks): static symmetric scales from calibration,
  zero point 0, per-channel weights, as TensorRT's explicit quantization requires.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
from pathlib import Path
from typing import Iterable

import onnx

from dtx.model.int8 import DEFAULT_SCHEME, Int8Scheme

FUSED_OPS = ("MultiHeadAttention", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "LayerNormalization")
QUANT_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QuantizeLinear", "DequantizeLinear")
# ops whose inputs/outputs stay float32 in a float16 graph: normalisation, softmax and the mask
FP16_KEEP_FP32 = ["LayerNormalization", "SkipLayerNormalization", "Softmax", "CumSum", "Range", "Mod", "Clip"]


def op_counts(model: onnx.ModelProto, ops: Iterable[str] = FUSED_OPS + QUANT_OPS) -> dict[str, int]:
    counts = collections.Counter(n.op_type for n in model.graph.node)
    return {op: counts[op] for op in ops if counts[op]}


def fuse_for_ort(src: Path, dst: Path) -> dict[str, int]:
    """Fuse `src` for ONNX Runtime into `dst`; returns the fused-op counts of the result."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    with contextlib.redirect_stdout(io.StringIO()):
        model = ir.load(str(src))
        model, _ = optimize_for_ort(model)
        ir.save(model, str(dst))
    return op_counts(onnx.load(str(dst), load_external_data=False))


def to_fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    logging.getLogger("onnxruntime.transformers.float16").setLevel(logging.ERROR)
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=FP16_KEEP_FP32)
    # the converter leaves stale float32 value_info behind; re-infer so every declared type is true
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save_model(model, str(dst))


def output_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes nearest each graph output: walking back from the outputs, the first MatMul on every path."""
    producer = {out: n for n in model.graph.node for out in n.output}
    found: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "MatMul":
            found.append(node.name)
            continue
        stack += list(node.input)
    return found


def gemm_as_matmul(src: Path) -> onnx.ModelProto:
    """`src` with every Gemm replaced by MatMul (+ Add), as ORT's dynamic quantizer does before quantizing:
    the graph on which output MatMuls are found must be the one whose MatMuls are quantized."""
    from onnxruntime.quantization.onnx_model import ONNXModel

    model = ONNXModel(onnx.load(str(src)))
    model.replace_gemm_with_matmul()
    return model.model


def _quantize_dynamic(model: onnx.ModelProto, dst: Path, scheme: Int8Scheme, **nodes) -> None:
    """ORT's dynamic quantization of the MatMuls of `model` under `scheme`. quantize_dynamic emits uint8
    activations only; int8 activations come from the same quantizer, asked for them (its MatMulInteger
    then runs s8s8), with its int8 range mended."""
    import numpy as np
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.quant_utils import QuantizationMode, save_and_reload_model_with_shape_infer
    from onnxruntime.quantization.quantize import update_opset_version

    options = {"op_types_to_quantize": ["MatMul"], "per_channel": scheme.per_channel, "reduce_range": scheme.reduce_range, "weight_type": QuantType.QInt8}
    if scheme.activations == "uint8":
        quantize_dynamic(model, str(dst), **options, **nodes)
        return
    model = update_opset_version(save_and_reload_model_with_shape_infer(model), QuantType.QInt8)  # what quantize_dynamic does first
    quantizer = ONNXQuantizer(model, scheme.per_channel, scheme.reduce_range, QuantizationMode.IntegerOps, False, QuantType.QInt8, QuantType.QInt8,
                              None, nodes.get("nodes_to_quantize"), nodes.get("nodes_to_exclude"), ["MatMul"], {"MatMulConstBOnly": True})  # fmt: skip
    quantizer.quantize_model()
    # its activation scale is max|x| / (range / 2) with the int8 range computed in int8 (127 - (-128) wraps to -1):
    # every scale comes out negative and every activation 0 (ORT 1.32); the range it means is 255
    for init in quantizer.model.initializer():
        if init.name == quantizer.fixed_qrange_int8_name:
            init.CopyFrom(onnx.numpy_helper.from_array(np.array(255 / 2, dtype=np.float32), init.name))
    quantizer.model.save_model_to_file(str(dst))


def quantize_dynamic_int8(src: Path, dst: Path, keep_float: list[str] | None = None, scheme: Int8Scheme = DEFAULT_SCHEME) -> list[str]:
    """Dynamic INT8 of the MatMuls of `src` under `scheme`, except the output MatMuls and `keep_float`; returns the nodes kept float."""
    model = gemm_as_matmul(src)
    kept = sorted(set(output_matmuls(model)) | set(keep_float or []))
    _quantize_dynamic(model, dst, scheme, nodes_to_exclude=kept)
    return kept


def matmul_sensitivity(src: Path, feeds: list[dict], work: Path, scheme: Int8Scheme = DEFAULT_SCHEME) -> dict[str, float]:
    """Each quantizable MatMul's cost: the graph's output error (mean |diff| / mean |fp32 output|) on
    real `feeds` when that MatMul alone is INT8. The worst ones are the first to keep in float32."""
    import numpy as np
    import onnxruntime as ort

    model = gemm_as_matmul(src)
    heads = set(output_matmuls(model))
    candidates = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in heads and any(i in {t.name for t in model.graph.initializer} for i in n.input)]

    def run(path: Path) -> list[np.ndarray]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [np.concatenate([o.reshape(len(o), -1) for o in session.run(None, f)], axis=1).ravel() for f in feeds]

    reference = run(src)
    scale = float(np.mean([np.abs(r).mean() for r in reference])) or 1.0
    out: dict[str, float] = {}
    for name in candidates:
        one = work / "sensitivity.onnx"
        _quantize_dynamic(model, one, scheme, nodes_to_quantize=[name])  # it quantizes a copy
        got = run(one)
        out[name] = float(np.mean([np.abs(g - r).mean() for g, r in zip(got, reference)])) / scale
        one.unlink()
    return out


def quantize_qdq_int8(src: Path, dst: Path, feeds: list[dict]) -> list[str]:
    """Static Q/DQ with symmetric int8 scales (zero point 0) calibrated on `feeds`; the output MatMuls stay float (returned)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    kept = output_matmuls(onnx.load(str(src), load_external_data=False))
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        nodes_to_exclude=kept,
    )
    return kept


def qdq_zero_points(model: onnx.ModelProto) -> list[tuple[str, int, list]]:
    """(tensor, dtype, values) of every QuantizeLinear/DequantizeLinear zero point in `model`."""
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            t = inits[n.input[2]]
            out.append((t.name, t.data_type, onnx.numpy_helper.to_array(t).ravel().tolist()))
    return out
