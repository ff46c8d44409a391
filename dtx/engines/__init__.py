"""Engines: build (`dtx build-engine`) and open (`open_engine`) an engine directory for one backend.

    with open_engine("engines/ort-fp32") as engine:
        reps = engine.runner.encode(passages)     # at indexing time
        out = engine.runner.cross(q_rep, q_mask, reps, p_mask)
"""

from __future__ import annotations

from pathlib import Path

from dtx.engines.engine import Engine, open_engine
from dtx.engines.manifest import EngineError
from dtx.engines.runner import Runner


def load_engine(engine_dir: str | Path, export_dir: str | Path | None = None, threads: int | None = None, verify: bool = True, warn: bool = True) -> Runner:
    """Just the runner of an engine directory (`open_engine` for the handle: manifest, export, segmenter, task)."""
    return open_engine(engine_dir, export_dir, threads, verify, warn).runner


__all__ = ["Engine", "open_engine", "load_engine", "Runner", "EngineError"]
