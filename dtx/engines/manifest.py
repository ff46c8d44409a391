"""engine.json: how an engine directory was built and from which export (by sha256)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

from dtx.atomic import ArtifactKind, artifact_field, read_artifact_json
from dtx.errors import DtxError
from dtx.export.manifest import CheckpointRef, ExportManifest
from dtx.model.config import DecoupleConfig

ENGINE_FILE = "engine.json"
EXPORT_COPY = "export.json"  # the export manifest the engine was built from
KIND = "dtx-engine"
FORMAT_VERSION = 1
ENGINE = ArtifactKind("engine", ENGINE_FILE)  # its own files: those engine.json lists
BACKENDS = ("ort", "trt", "torch", "aoti")
PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu", "cuda")


class EngineError(DtxError):
    """An engine directory is missing, corrupted, or does not belong with the export or machine."""


@dataclass(frozen=True)
class ServedShape:
    """The query shape an engine is built for (TensorRT profile optimum, CUDA graph captured at load, AOTInductor package compiled for it)."""

    candidates: int
    seq_q: int
    seq_p: int


@dataclass(frozen=True)
class EngineManifest:
    """engine.json, typed and checked: the one way any module reads an engine directory."""

    path: Path
    backend: str
    precision: str
    int8_mode: str | None
    device: str
    threads: int | None
    served: ServedShape | None
    cuda_graphs: bool | None
    graphs: Mapping[str, str]  # graph -> its file in the engine directory (ONNX, plan or package)
    outputs: Mapping[str, list[str]]
    files: Mapping[str, str]  # every file of the engine -> sha256
    export_path: Path
    export_graphs_sha256: Mapping[str, str]
    export: ExportManifest  # the export's manifest as it was at build (export.json, checked to be the export engine.json names): decoupling, model, tokenizer
    verification: Mapping[str, Any]  # {"kind": "parity" | "drift", ...}: what was checked before it was published
    backend_info: Mapping[str, Any]  # TensorRT / AOTInductor build signature (device, versions), else empty
    reports: Mapping[str, Any]  # fused op counts, INT8 MatMuls kept in float, build seconds, producers, machine

    @property
    def export_id(self) -> str:
        """The export it was built from."""
        return self.export.export_id

    @property
    def checkpoint(self) -> CheckpointRef:
        """What the torch backend runs: the checkpoint the export was made from."""
        return self.export.checkpoint

    @property
    def decoupling(self) -> DecoupleConfig:
        return self.export.decoupling

    @property
    def task(self) -> str:
        return self.export.task

    def graph_path(self, graph: str) -> Path:
        return self.path / self.graphs[graph]

    @classmethod
    def from_dict(cls, path: Path, data: dict, export: ExportManifest) -> "EngineManifest":
        where = path / ENGINE_FILE
        need = partial(artifact_field, where=where, fix="rebuild the engine", error=EngineError)

        if data.get("kind") != KIND or data.get("format_version") != FORMAT_VERSION:
            raise EngineError(f"{where} is not a dtx engine manifest of format {FORMAT_VERSION}; rebuild the engine")
        backend = need(data, "backend", str)
        if backend not in BACKENDS:
            raise EngineError(f"{path} uses backend {backend!r}; this dtx runs {', '.join(BACKENDS)}")
        source = need(data, "export", dict)
        if need(source, "export_id", str) != export.export_id:
            raise EngineError(f"{path / EXPORT_COPY} is export {export.export_id[:8]}, but the engine was built from {source['export_id'][:8]}; rebuild the engine")
        served = data.get("serve_shape")
        known = {"kind", "format_version", "backend", "precision", "int8_mode", "device", "threads", "serve_shape", "cuda_graphs", "graphs", "outputs",
                 "files", "export", "checkpoint", "parity", "drift", "verification", "tensorrt", "aoti", "decoupling", "rep_dim", "model"}  # fmt: skip
        verification = data.get("verification") or ({"kind": "parity", **data["parity"]} if data.get("parity") else {"kind": "drift", **data["drift"]} if data.get("drift") else {})
        return cls(
            path=path,
            backend=backend,
            precision=need(data, "precision", str),
            int8_mode=data.get("int8_mode"),
            device=need(data, "device", str),
            threads=data.get("threads"),
            served=ServedShape(**served) if served else None,
            cuda_graphs=data.get("cuda_graphs"),
            graphs=need(data, "graphs", dict),
            outputs=need(data, "outputs", dict),
            files=need(data, "files", dict),
            export_path=Path(need(source, "path", str)),
            export_graphs_sha256=need(source, "graphs_sha256", dict),
            export=export,
            verification=verification,
            backend_info=data.get("tensorrt") or data.get("aoti") or {},
            reports={k: v for k, v in data.items() if k not in known},
        )


def read_engine_export(engine_dir: str | Path) -> ExportManifest:
    """The copy of the export manifest an engine directory carries (decoupling settings, rep_dim, tokenizer)."""
    fix = f"rebuild the engine with `dtx build-engine EXPORT_DIR -o {engine_dir}`"
    data = read_artifact_json(engine_dir, EXPORT_COPY, "dtx engine", fix, EngineError)
    return ExportManifest.from_dict(Path(engine_dir), data, Path(engine_dir) / EXPORT_COPY)


def read_engine_manifest(engine_dir: str | Path) -> EngineManifest:
    """engine.json with its export copy, typed, or a one-line error saying how to build one."""
    fix = f"build one with `dtx build-engine EXPORT_DIR -o {engine_dir}`"
    data = read_artifact_json(engine_dir, ENGINE_FILE, "dtx engine", fix, EngineError)
    return EngineManifest.from_dict(Path(engine_dir), data, read_engine_export(engine_dir))


def check_pair(engine: EngineManifest, export: ExportManifest) -> None:
    """Refuse an engine built from another export than `export`."""
    if engine.export_id != export.export_id:
        raise EngineError(
            f"engine {engine.path} was built from export {engine.export_id[:8]}, but {export.path} is export "
            f"{export.export_id[:8]}; rebuild with `dtx build-engine {export.path}`"
        )
    for graph, sha in engine.export_graphs_sha256.items():
        if export.graph_sha256(graph) != sha:
            raise EngineError(f"{graph}.onnx in {export.path} changed since engine {engine.path} was built; rebuild the engine")
