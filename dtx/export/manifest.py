"""manifest.json of an export directory: what each graph is, where it came from, how exact it is."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

from dtx.atomic import ArtifactKind, artifact_field, read_artifact_json, sha256_file
from dtx.errors import DtxError
from dtx.export.parity import ParityResult
from dtx.export.spec import GraphSpec
from dtx.model.checkpoint import Checkpoint
from dtx.model.config import DecoupleConfig
from dtx.model.no_answer import NoAnswer
from dtx.task import Task

MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
KIND = "dtx-export"
FORMAT_VERSION = 1
EXPORT = ArtifactKind("export", MANIFEST_FILE)  # its own files: those manifest.json lists


def is_export_dir(path: Path) -> bool:
    return (path / MANIFEST_FILE).is_file()


def producers() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from dtx import __version__

    return {
        "dtx": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def model_shape(ckpt: Checkpoint) -> dict:
    """Sizes the cost model needs, read from the teacher's config."""
    from dtx.model.checkpoint import TEACHER_DIR
    from dtx.model.surgery import read_source_config

    c = read_source_config(ckpt.path / TEACHER_DIR)
    return {
        "model_type": c.model_type,
        "num_layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_attention_heads": c.num_attention_heads,
        "max_position_embeddings": c.max_position_embeddings,
        "labels": [c.id2label[i] for i in sorted(c.id2label)] if ckpt.config.task == Task.PAIR else [],
    }


def build_manifest(
    export_dir: Path,
    ckpt: Checkpoint,
    specs: dict[str, GraphSpec],
    export_id: str,
    opset: int,
    parity: list[ParityResult],
    timings: dict[str, float],
) -> dict:
    cfg = ckpt.config
    files = {p.relative_to(export_dir).as_posix(): file_entry(p) for p in sorted(export_dir.rglob("*")) if p.is_file()}
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "export_id": export_id,
        "decoupling": cfg.to_dict(),
        "rep_dim": cfg.rep_dim,
        "model": model_shape(ckpt),
        "opset": opset,
        "checkpoint": {"path": str(ckpt.path.resolve()), "weights_sha256": ckpt.meta.weights_sha256, "int8_training": ckpt.meta.int8_training, "no_answer": ckpt.meta.no_answer.to_dict()},
        "graphs": {g: {"file": s.file, **s.to_dict()} for g, s in specs.items()},
        "files": files,
        "parity": {
            "tolerance_max_abs": max(r.tolerance for r in parity),
            "worst_max_abs": max(r.max_abs for r in parity),
            "results": [r.to_dict() for r in parity],
        },
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "producers": producers(),
    }


class ExportManifestError(DtxError):
    """manifest.json (or an engine's copy of it) is missing a field or holds one of the wrong type."""


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint an export was made from: where it was, the sha256 of its weights, and the INT8 scheme
    it was trained for (QAT), which `dtx build-engine --int8` then builds, and its calibrated no-answer
    thresholds, which every reader of the export or its engines answers by."""

    path: Path
    weights_sha256: str
    int8_training: Mapping[str, Any] | None = None
    no_answer: NoAnswer = NoAnswer()


@dataclass(frozen=True)
class ModelShape:
    """The teacher's sizes, for the cost model and for reports (read once at export)."""

    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    max_position_embeddings: int
    labels: tuple[str, ...] = ()  # pair classifier's label names, in logit order


@dataclass(frozen=True)
class GraphEntry:
    file: str
    inputs: tuple[Mapping[str, Any], ...]  # {name, dtype, shape}, as GraphSpec.to_dict writes them
    outputs: tuple[Mapping[str, Any], ...]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o["name"] for o in self.outputs)


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ExportManifest:
    """An export directory's manifest.json, typed and checked: the one way any module reads an export
    (an engine directory carries the same, as export.json, for what it was built from)."""

    path: Path  # the directory it was read from (its tokenizer/ sits beside it)
    export_id: str
    decoupling: DecoupleConfig
    rep_dim: int
    model: ModelShape
    opset: int
    checkpoint: CheckpointRef
    graphs: Mapping[str, GraphEntry]
    files: Mapping[str, FileEntry]
    parity: Mapping[str, Any]
    seconds: Mapping[str, float]
    producers: Mapping[str, str]

    @property
    def task(self) -> str:
        return self.decoupling.task

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    @property
    def outputs(self) -> dict[str, list[str]]:
        """graph -> output names, what every runner needs."""
        return {g: list(e.output_names) for g, e in self.graphs.items()}

    def parity_rows(self) -> list[list]:
        """(check, worst max-abs, worst max-rel, comparisons) per parity check, as `dtx export` tabulates them."""
        rows: dict[str, list] = {}
        for r in self.parity["results"]:
            row = rows.setdefault(r["check"], [r["check"], 0.0, 0.0, 0])
            row[1], row[2], row[3] = max(row[1], r["max_abs"]), max(row[2], r["max_rel"]), row[3] + 1
        return list(rows.values())

    def graph_sha256(self, graph: str) -> str:
        return self.files[self.graphs[graph].file].sha256

    def segmenter(self):
        """The pair segmenter of this export (its tokenizer + decoupling settings)."""
        from transformers import AutoTokenizer

        from dtx.model.segments import PairSegmenter

        d = self.decoupling
        tokenizer = AutoTokenizer.from_pretrained(self.path / TOKENIZER_DIR)
        return PairSegmenter(tokenizer, d.max_question_len, d.max_passage_len, d.doc_stride)

    @classmethod
    def from_dict(cls, path: Path, data: dict, where: Path) -> "ExportManifest":
        """Typed, or a one-line ExportManifestError naming the file and the field."""
        from dtx.export.spec import GRAPHS

        need = partial(artifact_field, where=where, fix="re-run `dtx export`", error=ExportManifestError)

        if data.get("kind") != KIND or data.get("format_version") != FORMAT_VERSION:
            raise ExportManifestError(f"{where} is not a dtx export manifest of format {FORMAT_VERSION}; re-run `dtx export`")
        model = need(data, "model", dict)
        graphs = need(data, "graphs", dict)
        if sorted(graphs) != sorted(GRAPHS):
            raise ExportManifestError(f"{where} lists graphs {sorted(graphs)}, an export has {list(GRAPHS)}; re-run `dtx export`")
        files = need(data, "files", dict)
        ckpt = need(data, "checkpoint", dict)
        try:
            decoupling = DecoupleConfig.from_dict(need(data, "decoupling", dict))
        except TypeError as e:
            raise ExportManifestError(f"{where} has incomplete decoupling settings ({e}); re-run `dtx export`") from None
        return cls(
            path=path,
            export_id=need(data, "export_id", str),
            decoupling=decoupling,
            rep_dim=need(data, "rep_dim", int),
            model=ModelShape(
                **{k: need(model, k, int, "model.") for k in ("num_layers", "hidden_size", "intermediate_size", "num_attention_heads", "max_position_embeddings")},
                model_type=need(model, "model_type", str, "model."),
                labels=tuple(model.get("labels") or ()),
            ),
            opset=need(data, "opset", int),
            checkpoint=CheckpointRef(Path(need(ckpt, "path", str, "checkpoint.")), need(ckpt, "weights_sha256", str, "checkpoint."), ckpt.get("int8_training"), NoAnswer.from_dict(ckpt.get("no_answer"))),
            graphs={g: GraphEntry(need(e, "file", str, f"graphs.{g}."), tuple(need(e, "inputs", list, f"graphs.{g}.")), tuple(need(e, "outputs", list, f"graphs.{g}."))) for g, e in graphs.items()},
            files={rel: FileEntry(need(e, "sha256", str, f"files.{rel}."), need(e, "bytes", int, f"files.{rel}.")) for rel, e in files.items()},
            parity=data.get("parity") or {},
            seconds=data.get("seconds") or {},
            producers=data.get("producers") or {},
        )


def read_manifest(export_dir: str | Path) -> ExportManifest:
    """The manifest of an export directory, typed, or a one-line error saying how to make one."""
    fix = f"create it with `dtx export CKPT_DIR -o {export_dir}`"
    data = read_artifact_json(export_dir, MANIFEST_FILE, "dtx export", fix)
    return ExportManifest.from_dict(Path(export_dir), data, Path(export_dir) / MANIFEST_FILE)
