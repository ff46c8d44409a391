"""TensorRT backend (optional extra): strongly-typed engines from the fp32/FP16/Q-DQ ONNX.

TensorRT 10 deprecated and 11 removed implicit INT8 calibration and the FP16/INT8 builder flags,
so precision is whatever the ONNX says: the network is created STRONGLY_TYPED from the FP16 or
Q/DQ file. One optimization profile per graph covers (batch, question length, passage length):
opt is the shape the user serves (--batch, --seq-q, --seq-p), max the export's limits. A timing
cache next to the engines makes rebuilds fast. TensorRT is imported lazily; where it or a GPU is
missing, the backend says so in one line.

Not run in this repository's CI or on the lent GPU machines (neither has TensorRT): the profile
and ONNX preparation below are tested on CPU; building and running are tested where TensorRT
and a GPU exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dtx.engines.manifest import EngineError
from dtx.engines.runner import Runner
from dtx.export.spec import GraphSpec

TIMING_CACHE = "timing.cache"


def import_tensorrt():
    """The tensorrt module, or a one-line EngineError saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("--backend trt needs TensorRT, which is not installed here; available backends: ort, torch") from None
    import torch

    if not torch.cuda.is_available():
        raise EngineError("--backend trt needs an NVIDIA GPU and none is visible; available backends: ort, torch")
    return trt


@dataclass(frozen=True)
class ServeShape:
    """The shapes a deployment serves (opt) and the most it must accept (max)."""

    batch: int  # passages per query / per indexing batch
    seq_q: int
    seq_p: int
    max_q: int
    max_p: int

    def axis(self, name: str) -> tuple[int, int, int]:
        """(min, opt, max) of one symbolic axis of the graph specs."""
        table = {
            "batch": (1, self.batch, self.batch),
            "b": (1, self.batch, self.batch),
            "bq": (1, 1, self.batch),
            "lq": (1, self.seq_q, self.max_q),
            "lp": (1, self.seq_p, self.max_p),
        }
        if name in table:
            return table[name]
        raise KeyError(name)


def profile_shapes(spec: GraphSpec, shape: ServeShape) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Per input tensor, the (min, opt, max) shapes of its optimization profile.

    The `seq` axis of input.onnx serves questions and passages (opt = passage length, max = the
    longer limit); the `seq` axis of coupled.onnx serves whole pairs.
    """
    seq = {
        "input": (1, shape.seq_p, max(shape.max_q, shape.max_p)),
        "coupled": (1, shape.seq_q + shape.seq_p, shape.max_q + shape.max_p),
    }
    out = {}
    for t in spec.inputs:
        dims = []
        for axis in t.axes:
            if isinstance(axis, int):
                dims.append((axis, axis, axis))
            elif axis == "seq":
                dims.append(seq[spec.graph])
            else:
                dims.append(shape.axis(axis))
        out[t.name] = tuple(tuple(d[i] for d in dims) for i in range(3))
    return out


def build_plan(onnx_path: Path, plan_path: Path, spec: GraphSpec, shape: ServeShape, cache_path: Path, precision: str) -> dict:
    """Parse `onnx_path` into a strongly-typed network and serialise an engine to `plan_path`.

    An fp32 engine computes in fp32: TensorRT's default TF32 matmuls would miss the fp32 parity bar."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(spec, shape).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine for {onnx_path.name}; see its log above")
    plan_path.write_bytes(bytes(plan))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__}


def device_signature() -> dict:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def check_built_with(built_with: dict, here: dict) -> None:
    """Refuse plans serialised by another TensorRT version or for another GPU architecture."""
    for key in ("tensorrt", "compute_capability"):
        if built_with.get(key) != here.get(key):
            raise EngineError(
                f"engine was built with {key} {built_with.get(key)}, this machine has {here.get(key)}; "
                "rebuild it here with `dtx build-engine --backend trt`"
            )


class TrtRunner(Runner):
    """Deserialised engines with torch-allocated device buffers, run on one CUDA stream."""

    backend = "trt"

    def __init__(self, plans: dict[str, Path], output_names: dict[str, list[str]], built_with: dict) -> None:
        trt = import_tensorrt()
        import torch

        check_built_with(built_with, {"tensorrt": trt.__version__, **device_signature()})
        super().__init__(output_names)
        self.torch = torch
        self.stream = torch.cuda.Stream()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {g: runtime.deserialize_cuda_engine(p.read_bytes()) for g, p in plans.items()}
        self.contexts = {g: e.create_execution_context() for g, e in self.engines.items()}
        self.trt = trt

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch, ctx = self.torch, self.contexts[graph]
        keep = []
        with torch.cuda.stream(self.stream):
            for name, value in feeds.items():
                t = torch.from_numpy(np.ascontiguousarray(value)).to("cuda", non_blocking=True)
                keep.append(t)
                ctx.set_input_shape(name, tuple(t.shape))
                ctx.set_tensor_address(name, t.data_ptr())
            outs = []
            for name in self.output_names[graph]:
                shape = tuple(ctx.get_tensor_shape(name))
                out = torch.empty(shape, dtype=torch.float32, device="cuda")
                ctx.set_tensor_address(name, out.data_ptr())
                outs.append(out)
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise EngineError(f"TensorRT failed to run the {graph} engine")
        self.stream.synchronize()
        return [o.cpu().numpy() for o in outs]
