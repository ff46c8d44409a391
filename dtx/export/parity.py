"""Measured parity of exported graphs against PyTorch, on fresh random inputs at several shapes.

Each check feeds the same inputs to ONNX Runtime (CPU) and to the PyTorch reference and records
max-abs and relative (max-abs / max |reference|) error per output:
- input:      input.onnx           vs the PyTorch input component, questions and passages
- cross:      cross.onnx           vs the PyTorch cross component, on the same reps, bq = 1 and bq = b
- decoupled:  cross(input(q), input(p)) all in ONNX Runtime vs the PyTorch decoupled model
- coupled:    coupled.onnx         vs the Hugging Face teacher's own forward, at real (unpadded) slots
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from transformers import PreTrainedModel

from dtx.model.decoupled import DecoupledModel
from dtx.model.samples import PairBatch, random_pairs
from dtx.model.segments import PairSegmenter

FP32_TOLERANCE = 1e-4  # max-abs, on logits and hidden states


@dataclass
class ParityResult:
    check: str
    shape: str  # "b=4 bq=1 lq=16 lp=64"
    output: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.max_abs <= self.tolerance)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare(check: str, shape: str, name: str, got: np.ndarray, ref: np.ndarray, tol: float, real: np.ndarray | None = None) -> ParityResult:
    """Max-abs and relative error; with `real` (a 0/1 mask of got's leading axes) only real slots count."""
    if got.shape != ref.shape:
        return ParityResult(check, shape, f"{name} shape {got.shape} != {ref.shape}", float("inf"), float("inf"), tol)
    if real is not None and real.shape == got.shape[: real.ndim]:
        got, ref = got[real.astype(bool)], ref[real.astype(bool)]
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scale = max(float(np.abs(ref).max()), 1e-12)
    return ParityResult(check, shape, name, float(diff.max()), float(diff.max()) / scale, tol)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def default_shapes(max_q: int, max_p: int) -> list[tuple[int, int, int]]:
    """(batch, question length, passage length) triples, capped by the model's limits."""
    return [(1, min(8, max_q), min(16, max_p)), (4, min(16, max_q), min(64, max_p)), (8, min(32, max_q), min(150, max_p))]


def measure(
    export_dir: Path,
    model: DecoupledModel,
    teacher: PreTrainedModel,
    seg: PairSegmenter,
    shapes: list[tuple[int, int, int]],
    seed: int = 0,
    tol: float = FP32_TOLERANCE,
) -> list[ParityResult]:
    """Run every check at every shape; returns all results (the caller decides what fails)."""
    rng = np.random.default_rng(seed)
    inp, cross, coupled = (session(export_dir / f"{g}.onnx") for g in ("input", "cross", "coupled"))
    outputs = [o.name for o in cross.get_outputs()]
    results: list[ParityResult] = []
    for b, lq, lp in shapes:
        for bq in sorted({1, b}):
            batch = random_pairs(seg, rng, b, lq, lp, bq=bq)
            shape = f"b={b} bq={bq} lq={lq} lp={lp}"
            results += _check_pair(batch, shape, inp, cross, coupled, outputs, model, teacher, tol)
    return results


def _check_pair(batch: PairBatch, shape, inp, cross, coupled, outputs, model, teacher, tol) -> list[ParityResult]:
    q, p = batch.question, batch.passage
    res = []
    with torch.no_grad():
        q_ref = model.input(*(_t(a) for a in (q.input_ids, q.attention_mask, q.token_type_ids))).numpy()
        p_ref = model.input(*(_t(a) for a in (p.input_ids, p.attention_mask, p.token_type_ids))).numpy()
        cross_ref = [o.numpy() for o in model.cross(_t(q_ref), _t(q.attention_mask), _t(p_ref), _t(p.attention_mask))]
        c = batch.coupled()
        teacher_out = teacher(input_ids=_t(c.input_ids), attention_mask=_t(c.attention_mask), token_type_ids=_t(c.token_type_ids))
    (q_onnx,), (p_onnx,) = inp.run(None, q.as_dict()), inp.run(None, p.as_dict())
    res.append(compare("input", shape, "hidden (question)", q_onnx, q_ref, tol))
    res.append(compare("input", shape, "hidden (passage)", p_onnx, p_ref, tol))
    feed = {"q_hidden": q_ref, "q_mask": q.attention_mask, "p_hidden": p_ref, "p_mask": p.attention_mask}
    for name, got, ref in zip(outputs, cross.run(None, feed), cross_ref):
        res.append(compare("cross", shape, name, got, ref, tol))
    feed = {"q_hidden": q_onnx, "q_mask": q.attention_mask, "p_hidden": p_onnx, "p_mask": p.attention_mask}
    for name, got, ref in zip(outputs, cross.run(None, feed), cross_ref):
        res.append(compare("decoupled", shape, name, got, ref, tol))
    # padding slots are free by design (dtx numbers their positions differently from Hugging Face)
    for name, got in zip(outputs, coupled.run(None, c.as_dict())):
        res.append(compare("coupled", shape, name, got, teacher_out[name].numpy(), tol, real=c.attention_mask))
    return res
