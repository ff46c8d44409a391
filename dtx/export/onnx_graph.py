"""Export one module to one ONNX file, with dynamic axes taken from its GraphSpec.

Exporter choice: the dynamo-based `torch.onnx.export(dynamo=True)`. Measured here on
transformers 5 models, the TorchScript exporter's graphs scale attention scores by a separate
Mul that ONNX Runtime's attention matcher does not expect, so nothing fuses; the dynamo exporter
emits opset-18+ graphs (LayerNormalization, Gelu) that onnxscript's ORT fusion rewriter turns
into fused Attention/SkipLayerNormalization, and torch.export refuses data-dependent Python
control flow instead of silently baking in one shape.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.export import Dim

from dtx.errors import DtxError, first_line
from dtx.export.spec import GraphSpec

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's 2 GB limit, with room for the graph itself


def dynamic_shapes(spec: GraphSpec, max_seq: int) -> dict[str, dict[int, Dim]]:
    """One torch.export Dim per symbolic axis name, shared by every input that uses it."""
    dims: dict[str, Dim] = {}
    shapes = {}
    for t in spec.inputs:
        axes = {}
        for i, axis in enumerate(t.axes):
            if isinstance(axis, str):
                limit = max_seq if axis in ("seq", "lq", "lp") else None
                dims.setdefault(axis, Dim(axis, min=1, max=limit) if limit else Dim(axis, min=1))
                axes[i] = dims[axis]
        shapes[t.name] = axes
    return shapes


def export_graph(
    module: nn.Module,
    sample: tuple[torch.Tensor, ...],
    spec: GraphSpec,
    path: Path,
    opset: int,
    max_seq: int,
    metadata: dict[str, str],
) -> None:
    """Trace `module` on `sample` and write `path` (one file; external data only past 1.8 GB)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                module,
                sample,
                f=None,
                dynamo=True,
                opset_version=opset,
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_shapes=dynamic_shapes(spec, max_seq),
                optimize=True,
                verbose=False,
            )
        except Exception as e:  # the exporter's errors are long; keep the first line for the user
            raise DtxError(f"exporting {spec.file} failed: {first_line(e, 300)}") from e
    proto = program.model_proto
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "dtx"
    big = proto.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save_model(proto, path, save_as_external_data=big, location=f"{path.name}.data" if big else None)
