"""engine.json: how an engine directory was built and from which export (by sha256)."""

from __future__ import annotations

from pathlib import Path

from dtx.atomic import read_artifact_json
from dtx.errors import DtxError

ENGINE_FILE = "engine.json"
EXPORT_COPY = "export.json"  # the export manifest the engine was built from
KIND = "dtx-engine"
FORMAT_VERSION = 1
BACKENDS = ("ort", "trt", "torch", "aoti")
PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu", "cuda")


class EngineError(DtxError):
    """An engine directory is missing, corrupted, or does not belong with the export or machine."""


def read_engine_manifest(engine_dir: str | Path) -> dict:
    fix = f"build one with `dtx build-engine EXPORT_DIR -o {engine_dir}`"
    manifest = read_artifact_json(engine_dir, ENGINE_FILE, "dtx engine", fix, EngineError)
    if manifest.get("kind") != KIND or manifest.get("format_version") != FORMAT_VERSION:
        raise EngineError(f"{Path(engine_dir) / ENGINE_FILE} is not a dtx engine manifest of format {FORMAT_VERSION}; rebuild the engine")
    return manifest


def check_pair(engine: dict, export: dict, engine_dir: Path, export_dir: Path) -> None:
    """Refuse an engine built from another export than `export_dir`."""
    if engine["export"]["export_id"] != export["export_id"]:
        raise EngineError(
            f"engine {engine_dir} was built from export {engine['export']['export_id'][:8]}, but {export_dir} is export "
            f"{export['export_id'][:8]}; rebuild with `dtx build-engine {export_dir}`"
        )
    for graph, sha in engine["export"]["graphs_sha256"].items():
        if export["files"][f"{graph}.onnx"]["sha256"] != sha:
            raise EngineError(f"{graph}.onnx in {export_dir} changed since engine {engine_dir} was built; rebuild the engine")


def read_engine_export(engine_dir: str | Path) -> dict:
    """The copy of the export manifest an engine directory carries (decoupling settings, rep_dim)."""
    fix = f"rebuild the engine with `dtx build-engine EXPORT_DIR -o {engine_dir}`"
    return read_artifact_json(engine_dir, EXPORT_COPY, "dtx engine", fix, EngineError)
