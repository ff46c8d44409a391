"""Where an engine graph's time goes: ONNX Runtime's per-node profile, summed per op type.

Why: a speed-up bar (INT8 against FP32, decoupled against coupled) is moved by the ops that take the
time, and on a CPU those are not always the MatMuls. The graph runs on the served shape (one
question of --seq-q tokens against K passages of --seq-p, or K packed pairs for the coupled graph) on
random-token pairs (latency does not depend on the values), with the session options the engines
use, after one warm-up run.

    .venv/bin/python scripts/op_profile.py ENGINE_DIR --graph cross -K 20 --threads 2 --json profile.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dtx.bench.machine import machine_info
from dtx.engines import open_engine
from dtx.engines.calibration import graph_feeds
from dtx.model.samples import random_pairs
from dtx.report import emit, save_json

def served_feeds(engine_dir: Path, graph: str, k: int, seq_q: int, seq_p: int) -> dict[str, np.ndarray]:
    """One feed of `graph` at the served shape, as the build's calibration makes them (dtx.engines.calibration):
    random-token pairs, one question against k passages, the cross graph fed by the engine's own input component;
    the input graph gets the passages (what indexing runs)."""
    engine = open_engine(engine_dir, verify=False)
    try:
        pairs = random_pairs(engine.segmenter, np.random.default_rng(0), k, seq_q, seq_p, bq=1)
        return graph_feeds([pairs], engine.runner.encode)[graph][-1]
    finally:
        engine.close()


def profile(path: Path, feeds: dict, runs: int, threads: int | None) -> tuple[list[float], dict[str, float], dict[str, int]]:
    """(each run's ms, ms per run per op type, nodes per op type) of `runs` profiled runs after one warm-up."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="dtx-op-profile-") as tmp:
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)  # warm-up, not profiled
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    run_ms = [e["dur"] / 1000 for e in events if e.get("name") == "model_run"][1:]  # the first profiled run warms this session
    per_op: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    first_run_end = next(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > first_run_end:
            per_op[e["args"]["op_name"]] += e["dur"] / 1000 / runs
            nodes[e["args"]["op_name"]] += 1
    return run_ms, dict(per_op), {op: n // runs for op, n in nodes.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("engine", type=Path, help="An ONNX Runtime engine directory (dtx build-engine).")
    ap.add_argument("--graph", choices=("input", "cross", "coupled"), default="cross")
    ap.add_argument("-K", "--candidates", type=int, default=20)
    ap.add_argument("--seq-q", type=int, default=32)
    ap.add_argument("--seq-p", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, help="intra-op threads (default: ONNX Runtime's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    path = args.engine / f"{args.graph}.onnx"
    if not path.is_file():
        ap.error(f"{path} does not exist: pass an ONNX Runtime engine directory (dtx build-engine EXPORT)")
    feeds = served_feeds(args.engine, args.graph, args.candidates, args.seq_q, args.seq_p)
    run_ms, per_op, nodes = profile(path, feeds, args.runs, args.threads)
    total = sum(per_op.values())
    rows = [[op, round(ms, 1), f"{100 * ms / total:.1f}%", nodes[op]] for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]) if ms >= 0.001 * total]
    machine = machine_info() | {"threads": args.threads or "ONNX Runtime default"}
    emit(f"{path}: K={args.candidates}, {args.seq_q} + {args.seq_p} tokens, median run {sorted(run_ms)[len(run_ms) // 2]:.0f} ms; {machine['cpu']['model']} ({machine['cpu']['int8_isa']})",
         ["op", "ms per run", "share", "nodes"], rows)  # fmt: skip
    save_json(args.json, {"graph": str(path), "candidates": args.candidates, "seq_q": args.seq_q, "seq_p": args.seq_p, "run_ms": run_ms, "ms_per_op": per_op, "nodes": nodes, "machine": machine})


if __name__ == "__main__":
    main()
