"""The one place that names every graph tensor, its dtype and its axes (docs/design.md, "Files between commands").

Export builds torch.export dynamic shapes from these specs, `--check` validates graphs against
them, and runners and TensorRT profiles read them. An axis is a symbolic name (dynamic) or an int.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtx.task import Task

INPUT, CROSS, COUPLED = "input", "cross", "coupled"
GRAPHS = (INPUT, CROSS, COUPLED)
FILES = {g: f"{g}.onnx" for g in GRAPHS}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "int64" or "float32"
    axes: tuple[str | int, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.axes)}


@dataclass(frozen=True)
class GraphSpec:
    graph: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file(self) -> str:
        return FILES[self.graph]

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}


def _ids(batch: str, seq: str) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(n, "int64", (batch, seq)) for n in ("input_ids", "attention_mask", "token_type_ids"))


def head_outputs(task: str, batch: str, seq: str, num_labels: int) -> tuple[TensorSpec, ...]:
    if task == Task.QA:
        return (TensorSpec("start_logits", "float32", (batch, seq)), TensorSpec("end_logits", "float32", (batch, seq)))
    return (TensorSpec("logits", "float32", (batch, num_labels)),)


def graph_specs(task: str, rep_dim: int, num_labels: int) -> dict[str, GraphSpec]:
    """Specs of input.onnx, cross.onnx and coupled.onnx for one checkpoint."""
    return {
        INPUT: GraphSpec(INPUT, _ids("batch", "seq"), (TensorSpec("hidden", "float32", ("batch", "seq", rep_dim)),)),
        CROSS: GraphSpec(
            CROSS,
            (
                TensorSpec("q_hidden", "float32", ("bq", "lq", rep_dim)),
                TensorSpec("q_mask", "int64", ("bq", "lq")),
                TensorSpec("p_hidden", "float32", ("b", "lp", rep_dim)),
                TensorSpec("p_mask", "int64", ("b", "lp")),
            ),
            head_outputs(task, "b", "lq + lp", num_labels),
        ),
        COUPLED: GraphSpec(COUPLED, _ids("batch", "seq"), head_outputs(task, "batch", "seq", num_labels)),
    }
