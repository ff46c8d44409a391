"""`Engine`: an engine directory opened once into a typed handle.

    with open_engine("engines/ort-fp32") as engine:
        engine.task, engine.export.rep_dim         # what it was built from
        reps = engine.runner.encode(batch)          # the runner is built on first use

The manifest (engine.json and its export copy) is read and its files verified here, once; store,
query, bench, serve and eval take the handle instead of the directory.
"""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path

from dtx.engines.backends import Backend, get_backend
from dtx.engines.manifest import EngineError, EngineManifest, check_pair, read_engine_manifest
from dtx.engines.runner import Runner
from dtx.export.manifest import ExportManifest
from dtx.task import Task


class Engine:
    """A verified engine directory: its manifest, its export, its segmenter and task, and a runner built lazily."""

    def __init__(self, manifest: EngineManifest, threads: int | None = None, runner: Runner | None = None) -> None:
        """`runner`: one built elsewhere for this manifest (a modified runner a benchmark times); else the backend builds it."""
        self.manifest = manifest
        self.threads = threads
        self._runner = runner

    @property
    def path(self) -> Path:
        return self.manifest.path

    @property
    def backend(self) -> Backend:
        return get_backend(self.manifest.backend)

    @property
    def export(self) -> ExportManifest:
        return self.manifest.export

    @property
    def task(self) -> Task:
        return Task(self.manifest.task)

    @property
    def device(self) -> str:
        return self.manifest.device

    @property
    def on_gpu(self) -> bool:
        return self.backend.on_gpu(self.manifest)

    @property
    def input_identity(self) -> str:
        return self.backend.input_identity(self.manifest)

    @cached_property
    def segmenter(self):
        return self.export.segmenter()

    @property
    def runner(self) -> Runner:
        """The backend's runner, built on first use and kept until `close`."""
        if self._runner is None:
            self._runner = self.backend.load(self.manifest, self.threads)
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_engine(engine_dir: str | Path, export_dir: str | Path | None = None, threads: int | None = None, verify: bool = True, warn: bool = True) -> Engine:
    """The engine in `engine_dir`, read once; with `export_dir`, refuse an engine built from another export;
    with `verify`, refuse a file that changed since the build; with `warn`, say in one line on stderr when its
    INT8 arithmetic is not exact on this CPU (it still runs)."""
    from dtx.atomic import sha256_file
    from dtx.export.manifest import read_manifest

    engine_dir = Path(engine_dir)
    manifest = read_engine_manifest(engine_dir)
    get_backend(manifest.backend)
    if export_dir is not None:
        check_pair(manifest, read_manifest(export_dir))
    if verify:
        for rel, sha in manifest.files.items():
            path = engine_dir / rel
            if not path.is_file():
                raise EngineError(f"{path} is missing; rebuild the engine")
            if sha256_file(path) != sha:
                raise EngineError(f"{path} does not match engine.json's sha256; rebuild the engine")
    if warn and (warning := int8_warning(manifest, engine_dir)):
        print(warning, file=sys.stderr)
    return Engine(manifest, threads)


def int8_warning(manifest: EngineManifest, engine_dir: Path) -> str | None:
    """The line for an INT8 engine whose weights this CPU's integer kernel can saturate on (built on another
    machine, with --int8-scheme, or for a checkpoint trained for 8-bit weights); None otherwise."""
    from dtx.engines.cpu import int8_isa
    from dtx.model.int8 import Int8Scheme, saturation_warning

    scheme = manifest.reports.get("int8_scheme")
    return saturation_warning(Int8Scheme.parse(scheme["name"]), int8_isa(), f"engine {engine_dir}") if scheme else None
