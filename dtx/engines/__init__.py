"""Engines: build (`dtx build-engine`) and load (`load_engine`) a runner for one backend.

    with load_engine("engines/ort-fp32") as runner:
        reps = runner.encode(passages)            # at indexing time
        out = runner.cross(q_rep, q_mask, reps, p_mask)
"""

from __future__ import annotations

from pathlib import Path

from dtx.engines.manifest import EngineError, check_pair, read_engine_manifest
from dtx.engines.runner import Runner


def load_engine(engine_dir: str | Path, export_dir: str | Path | None = None, threads: int | None = None, verify: bool = True) -> Runner:
    """A runner for an engine directory (`runner.manifest` is its EngineManifest); with `export_dir`,
    refuse an engine built from another export; with `verify`, refuse a file that changed since the build."""
    from dtx.atomic import sha256_file
    from dtx.export.manifest import read_manifest

    engine_dir = Path(engine_dir)
    manifest = read_engine_manifest(engine_dir)
    if export_dir is not None:
        check_pair(manifest, read_manifest(export_dir))
    if verify:
        for rel, sha in manifest.files.items():
            path = engine_dir / rel
            if not path.is_file():
                raise EngineError(f"{path} is missing; rebuild the engine")
            if sha256_file(path) != sha:
                raise EngineError(f"{path} does not match engine.json's sha256; rebuild the engine")
    graphs = {g: manifest.graph_path(g) for g in manifest.graphs}
    outputs = dict(manifest.outputs)
    if manifest.backend == "ort":
        from dtx.engines.runner import OrtRunner

        runner: Runner = OrtRunner(graphs, outputs, threads=threads or manifest.threads, device=manifest.device)
    elif manifest.backend == "trt":
        from dtx.engines.tensorrt import TrtRunner

        runner = TrtRunner(graphs, outputs, dict(manifest.backend_info))
    elif manifest.backend == "torch":
        from dtx.engines.torch_backend import TorchRunner

        s = manifest.served
        warm = (s.candidates, s.seq_q, s.seq_p) if s else None
        runner = TorchRunner(manifest.checkpoint.path, outputs, manifest.device, manifest.precision, cuda_graphs=manifest.cuda_graphs is not False, warm_shape=warm)
    else:
        from dtx.engines.aoti import AotiRunner

        runner = AotiRunner(graphs, outputs, dict(manifest.backend_info), manifest.precision, engine_dir)
    runner.manifest = manifest
    return runner


__all__ = ["load_engine", "Runner", "EngineError"]
