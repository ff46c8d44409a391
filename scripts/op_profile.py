"""Where an engine graph's time goes: ONNX Runtime's per-node profile, summed per op type.

Why: a speed-up bar (INT8 against FP32, decoupled against coupled) is moved by the ops that take the
time, and on a CPU those are not always the MatMuls. The graph runs on the served shape (one
question of --seq-q tokens against K passages of --seq-p, or K packed pairs for the coupled graph),
random inputs of the graph's own types (latency does not depend on the values), with the session
options the engines use, after one warm-up run.

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
import onnx
import onnxruntime as ort

from dtx.bench.machine import machine_info
from dtx.report import emit, save_json

DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}


def random_feeds(model: onnx.ModelProto, k: int, seq_q: int, seq_p: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of the served shape: q_* (1 question), p_* (k passages), else (k pairs of seq_q + seq_p tokens)."""
    feeds = {}
    for i in model.graph.input:
        t = i.type.tensor_type
        dtype = DTYPES[t.elem_type]
        width = [d.dim_value for d in t.shape.dim[2:]]  # hidden states carry a static last axis
        shape = (1, seq_q, *width) if i.name.startswith("q_") else (k, seq_p, *width) if i.name.startswith("p_") else (k, seq_q + seq_p)
        if dtype == np.float32:
            feeds[i.name] = rng.normal(0, 1, shape).astype(dtype)
        elif "mask" in i.name:
            feeds[i.name] = np.ones(shape, dtype)
        elif "type" in i.name:
            feeds[i.name] = np.concatenate([np.zeros((k, seq_q), dtype), np.ones((k, seq_p), dtype)], axis=1)
        else:
            feeds[i.name] = rng.integers(1000, 2000, shape).astype(dtype)
    return feeds


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
    feeds = random_feeds(onnx.load(str(path), load_external_data=False), args.candidates, args.seq_q, args.seq_p, np.random.default_rng(0))
    run_ms, per_op, nodes = profile(path, feeds, args.runs, args.threads)
    total = sum(per_op.values())
    rows = [[op, round(ms, 1), f"{100 * ms / total:.1f}%", nodes[op]] for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]) if ms >= 0.001 * total]
    machine = machine_info() | {"threads": args.threads or "ONNX Runtime default"}
    emit(f"{path}: K={args.candidates}, {args.seq_q} + {args.seq_p} tokens, median run {sorted(run_ms)[len(run_ms) // 2]:.0f} ms; {machine['cpu']['model']} ({machine['cpu']['int8_isa']})",
         ["op", "ms per run", "share", "nodes"], rows)  # fmt: skip
    save_json(args.json, {"graph": str(path), "candidates": args.candidates, "seq_q": args.seq_q, "seq_p": args.seq_p, "run_ms": run_ms, "ms_per_op": per_op, "nodes": nodes, "machine": machine})


if __name__ == "__main__":
    main()
