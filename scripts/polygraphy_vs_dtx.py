"""Polygraphy's comparator beside dtx's on padded batches (docs/engines.md, "One comparator").

    .venv/bin/pip install polygraphy     # not a dtx dependency
    bash scripts/main.sh                 # the engines compared: runs/main/engine-ort-fp32, -int8
    .venv/bin/python scripts/polygraphy_vs_dtx.py

For each engine, a coupled batch of 6 random pairs padded to different lengths: max-abs against the
export over every slot, over real tokens only (what dtx's compare counts), over padded slots, and
Polygraphy's `CompareFunc.simple(atol=1e-4)` verdict (which has no mask).
"""

from __future__ import annotations

import numpy as np
from polygraphy.comparator import CompareFunc
from polygraphy.comparator.struct import IterationResult
from polygraphy.logger import G_LOGGER

from dtx.engines import load_engine
from dtx.engines.runner import OrtRunner
from dtx.export.manifest import read_manifest
from dtx.export.spec import GRAPHS
from dtx.model.samples import random_pairs


def main() -> None:
    G_LOGGER.module_severity = G_LOGGER.CRITICAL
    export = read_manifest("runs/main/onnx")
    reference = OrtRunner({g: export.path / export.graphs[g].file for g in GRAPHS}, export.outputs)
    seg = export.segmenter()
    for name in ("engine-ort-fp32", "engine-ort-int8"):
        pairs = random_pairs(seg, np.random.default_rng(0), 6, 24, 64).coupled()
        with load_engine(f"runs/main/{name}") as engine:
            got, want = engine.coupled(pairs), reference.coupled(pairs)
        real = pairs.attention_mask.astype(bool)
        for k in want:
            d = np.abs(got[k] - want[k])
            print(f"{name} {k}: max-abs every slot {d.max():.3g}, real tokens {d[real].max():.3g}, padded {d[~real].max() if (~real).any() else 0:.3g}")
        verdict = CompareFunc.simple(atol=1e-4, rtol=0)(IterationResult(outputs=got, runner_name="engine"), IterationResult(outputs=want, runner_name="export"))
        print(f"{name}: polygraphy simple(atol=1e-4) passes {({k: bool(v) for k, v in verdict.items()})}")


if __name__ == "__main__":
    main()
