"""manifest.json of an export directory: what each graph is, where it came from, how exact it is."""

from __future__ import annotations

import platform
from pathlib import Path

from dtx.atomic import read_artifact_json, sha256_file
from dtx.errors import DtxError
from dtx.export.parity import ParityResult
from dtx.export.spec import GraphSpec
from dtx.model.checkpoint import Checkpoint

MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
KIND = "dtx-export"
FORMAT_VERSION = 1


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
        "labels": [c.id2label[i] for i in sorted(c.id2label)] if ckpt.config.task == "pair" else [],
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
        "checkpoint": {"path": str(ckpt.path.resolve()), "weights_sha256": ckpt.meta["weights_sha256"]},
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


def segmenter_for(artifact_dir: str | Path, manifest: dict):
    """The pair segmenter of an export or engine directory (its tokenizer + decoupling settings)."""
    from transformers import AutoTokenizer

    from dtx.model.segments import PairSegmenter

    d = manifest["decoupling"]
    tokenizer = AutoTokenizer.from_pretrained(Path(artifact_dir) / TOKENIZER_DIR)
    return PairSegmenter(tokenizer, d["max_question_len"], d["max_passage_len"], d["doc_stride"])


def read_manifest(export_dir: str | Path) -> dict:
    """The manifest of an export directory, or a one-line error saying how to make one."""
    fix = f"create it with `dtx export CKPT_DIR -o {export_dir}`"
    manifest = read_artifact_json(export_dir, MANIFEST_FILE, "dtx export", fix)
    if manifest.get("kind") != KIND or manifest.get("format_version") != FORMAT_VERSION:
        raise DtxError(f"{Path(export_dir) / MANIFEST_FILE} is not a dtx export manifest of format {FORMAT_VERSION}; re-run `dtx export`")
    return manifest
