"""The INT8 engine's arithmetic in torch, for quantization-aware distillation (docs/training.md, "INT8").

`dtx build-engine --int8` (dynamic, ONNX Runtime CPU) turns some MatMuls into integer ones; QAT
must train the student through exactly those, computed exactly as ONNX Runtime computes them, or
it optimises a model that is never served:

- weights: `quantize_weight` reproduces ORT's quantizer (onnxruntime.quantization.quant_utils:
  compute_scale_zp + quantize_nparray): symmetric int8, the scale 2 max|w| / (qmax - qmin) in
  float64 stored as float32, values round-half-to-even;
- activations: `quantize_activation` reproduces DynamicQuantizeLinear (ORT's
  GetQuantizationParameter + MlasQuantizeLinear) per tensor, over the whole batch, padding slots
  included, as the engine sees it; or, for int8 activations, the ReduceMin/ReduceMax/Abs/Div nodes
  ORT's quantizer emits (scale max|x| / 127.5, zero point 0);
- the product of the dequantized values is the integer MatMul times both scales (exact up to
  float32 summation order).

Rounding has no gradient; the straight-through estimator passes it through unchanged (scales are
treated as constants, as in Q8BERT). Which Linears: `engine_int8_linears` finds the same ones the
build quantizes - every MatMul with a weight (a Linear on a 2-D input exports as Gemm, which the
quantizer turns into MatMul first) except the first MatMul on each path back from a graph's
output (dtx.engines.transforms.output_matmuls) - by walking the autograd graph of one forward
pass the way the build walks the ONNX graph.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from dtx.model.decoupled import DecoupledModel
from dtx.model.int8 import Int8Scheme

_TINY = torch.finfo(torch.float32).tiny


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """`q` forward, identity backward."""
    return x + (q - x).detach()


def quantize_weight(w: torch.Tensor, scheme: Int8Scheme) -> torch.Tensor:
    """`w` (out, in) as the INT8 engine stores it, dequantized: int8 symmetric per output channel or per tensor."""
    with torch.no_grad():
        w32 = w.detach().float()
        absmax = w32.abs().amax(dim=1, keepdim=True) if scheme.per_channel else w32.abs().amax()
        span = 128.0 if scheme.reduce_range else 254.0  # qmax - qmin: [-64, 64] reduced, [-127, 127] symmetric
        scale = ((2 * absmax.double()) / span).float()
        scale = torch.where(scale < _TINY, torch.ones_like(scale), scale)
        q = torch.round(w32 / scale).clamp(-128, 127)
    return _ste(w, (q * scale).to(w.dtype))


def quantize_activation(x: torch.Tensor, scheme: Int8Scheme) -> torch.Tensor:
    """`x` as the engine's dynamic quantization sees it, dequantized: one scale (and zero point) for the whole tensor."""
    with torch.no_grad():
        x32 = x.detach().float()
        lo, hi = x32.min(), x32.max()
        if scheme.activations == "uint8":
            lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
            scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / 255.0)
            zero = torch.round(torch.clamp(-lo / scale, 0.0, 255.0))
            q = torch.clamp(torch.round(x32 / scale) + zero, 0.0, 255.0) - zero
        else:
            scale = torch.maximum(lo.abs(), hi.abs()) / 127.5
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
            q = torch.clamp(torch.round(x32 / scale), -128.0, 127.0)
    return _ste(x, (q * scale).to(x.dtype))


class FakeQuantLinear(nn.Module):
    """A Linear computed as the INT8 engine computes its MatMul (+ the float bias add).

    Holds the original Linear's own Parameters under the same names, so the model's state_dict,
    optimizer state and checkpoints are unchanged while it is swapped in. The product runs in
    float32 even under autocast: the engine's integer MatMul is exact, bf16 would add its own error.
    """

    def __init__(self, linear: nn.Linear, scheme: Int8Scheme) -> None:
        super().__init__()
        self.scheme = scheme
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return nn.functional.linear(quantize_activation(x.float(), self.scheme), quantize_weight(self.weight.float(), self.scheme), None if self.bias is None else self.bias.float())


def _sample(model: DecoupledModel) -> tuple[torch.Tensor, ...]:
    """A tiny valid (ids, mask, types) batch on the model's device: the walk depends on the graph, not the values."""
    device = next(model.parameters()).device
    ids = torch.full((2, 4), 1, dtype=torch.long, device=device)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def engine_int8_linears(model: DecoupledModel) -> dict[str, nn.Linear]:
    """Name -> Linear of every Linear the dynamic INT8 engine quantizes, in the input and cross graphs.

    One forward of each component records which Linear made which autograd node; walking back from
    the component's outputs, the first Linear on each path is one the build keeps float; every
    other Linear that ran is quantized (a Linear unused by the forward is in no graph).
    """
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    made: dict = {}  # autograd node -> name of the Linear whose output it is

    def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        made[out.grad_fn] = names[module]

    def kept_from(outputs) -> set[str]:
        kept, seen, stack = set(), set(), [o.grad_fn for o in outputs]
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            if fn in made:
                kept.add(made[fn])
                continue
            stack += [nxt for nxt, _ in fn.next_functions]
        return kept

    hooks = [m.register_forward_hook(record) for m in names]
    grads = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        with torch.enable_grad():
            ids, mask, types = _sample(model)
            rep = model.input(ids, mask, types)
            kept = kept_from([rep])
            out = model.cross(rep, mask, rep, mask)
            kept |= kept_from(out)
    finally:
        for h in hooks:
            h.remove()
        for p, g in grads.items():
            p.requires_grad_(g)
    ran = set(made.values())
    return {n: m for m, n in names.items() if n in ran and n not in kept}


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (model.get_submodule(path) if path else model), leaf


@contextlib.contextmanager
def fake_quantized(model: DecoupledModel, scheme: Int8Scheme) -> Iterator[list[str]]:
    """Within the block, the Linears the INT8 engine quantizes compute as it does (yields their names);
    the original Linears are back afterwards, whatever happened inside."""
    targets = engine_int8_linears(model)
    for name, linear in targets.items():
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, FakeQuantLinear(linear, scheme))
    try:
        yield sorted(targets)
    finally:
        for name, linear in targets.items():
            parent, leaf = _parent(model, name)
            setattr(parent, leaf, linear)
