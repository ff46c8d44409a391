"""Engines: build (`dtx build-engine`) and load (`load_engine`) a runner for one backend.

    with load_engine("engines/ort-fp32") as runner:
        reps = runner.encode(passages)            # at indexing time
        out = runner.cross(q_rep, q_mask, reps, p_mask)
"""

from __future__ import annotations

from pathlib import Path

from dtx.engines.manifest import BACKENDS, EngineError, check_pair, read_engine_manifest
from dtx.engines.runner import Runner


def load_engine(engine_dir: str | Path, export_dir: str | Path | None = None, threads: int | None = None, verify: bool = True) -> Runner:
    """A runner for an engine directory; with `export_dir`, refuse an engine built from another export."""
    from dtx.atomic import sha256_file
    from dtx.export.manifest import read_manifest

    engine_dir = Path(engine_dir)
    manifest = read_engine_manifest(engine_dir)
    if export_dir is not None:
        check_pair(manifest, read_manifest(export_dir), engine_dir, Path(export_dir))
    if verify:
        for rel, sha in manifest["files"].items():
            path = engine_dir / rel
            if not path.is_file():
                raise EngineError(f"{path} is missing; rebuild the engine")
            if sha256_file(path) != sha:
                raise EngineError(f"{path} does not match engine.json's sha256; rebuild the engine")
    graphs = {g: engine_dir / f for g, f in manifest["graphs"].items()}
    outputs = manifest["outputs"]
    backend = manifest["backend"]
    if backend == "ort":
        from dtx.engines.runner import OrtRunner

        runner: Runner = OrtRunner(graphs, outputs, threads=threads or manifest["threads"], device=manifest["device"])
    elif backend == "trt":
        from dtx.engines.tensorrt import TrtRunner

        runner = TrtRunner(graphs, outputs, manifest["tensorrt"])
    elif backend == "torch":
        from dtx.engines.torch_backend import TorchRunner

        serve = manifest.get("serve_shape") or {}
        warm = (serve["candidates"], serve["seq_q"], serve["seq_p"]) if serve else None
        runner = TorchRunner(Path(manifest["checkpoint"]["path"]), outputs, manifest["device"], manifest["precision"], cuda_graphs=manifest.get("cuda_graphs") is not False, warm_shape=warm)
    elif backend == "aoti":
        from dtx.engines.aoti import AotiRunner

        runner = AotiRunner(graphs, outputs, manifest["aoti"], manifest["precision"], engine_dir)
    else:
        raise EngineError(f"{engine_dir} uses backend {backend!r}; this dtx runs {', '.join(BACKENDS)}")
    runner.manifest = manifest
    return runner


__all__ = ["load_engine", "Runner", "EngineError"]
