"""Dynamic INT8 schemes of one export side by side: drift from FP32 on real pairs and decoupled latency.

The cheap causes of INT8 loss (issue 21) measured on one machine in one run: per-channel vs
per-tensor weights, uint8 vs int8 activations, 7-bit weights (reduce_range). Each scheme in
dtx.model.int8.SCHEMES is built with `dtx build-engine --int8 --int8-scheme NAME --calib DATA`
(whose drift check is the drift column: max-abs of the decoupled outputs against the FP32 export,
and how often the top answer stays the same), and the decoupled query of every engine, FP32 first,
is timed interleaved - each query runs every engine, in rotating order - on `dtx bench`'s workload
(one question against K cached passages). `--smooth 0.5,0.8` adds the default scheme with
SmoothQuant-style smoothing at each alpha (`dtx build-engine --int8-smooth`). The CPU and its
integer ISA are part of the JSON: an INT8 speed-up holds for that ISA only. F1 is not measured here: run `dtx eval` on the engines
that matter (docs/training.md, "INT8").

    .venv/bin/python scripts/int8_schemes.py CKPT-onnx --data data/disfl_qa.task.json.gz --json int8-schemes.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dtx.bench.machine import machine_info
from dtx.bench.stats import Latency, speedup
from dtx.bench.workload import QueryWorkload, Shape
from dtx.engines import open_engine
from dtx.engines.build import SERVE_SEQ_P, SERVE_SEQ_Q, BuildOptions, build_engine
from dtx.model.int8 import DEFAULT_SCHEME, SCHEMES
from dtx.report import emit, save_json


def variants(schemes: list[str], alphas: list[float]) -> dict[str, tuple[str, float | None]]:
    """row name -> (scheme, SmoothQuant alpha or None): every scheme plain, then the default scheme smoothed at each alpha."""
    out = {name: (name, None) for name in schemes}
    out |= {f"{DEFAULT_SCHEME.name} smooth {a:g}": (DEFAULT_SCHEME.name, a) for a in alphas}
    return out


def build_all(export_dir: Path, work: Path, rows: dict[str, tuple[str, float | None]], data: str, drift_pairs: int, threads: int | None) -> dict[str, Path]:
    """name -> engine directory: "fp32", then one INT8 engine per row."""
    built = {"fp32": work / "fp32"}
    build_engine(export_dir, built["fp32"], BuildOptions(precision="fp32", threads=threads), progress=False)
    for i, (name, (scheme, alpha)) in enumerate(rows.items()):
        built[name] = work / f"int8-{i}"
        opts = BuildOptions(precision="int8", int8_scheme=scheme, int8_smooth=alpha, calib=data, drift_pairs=drift_pairs, threads=threads)
        build_engine(export_dir, built[name], opts, progress=False)
    return built


def time_interleaved(engines: dict[str, Path], shape: Shape, runs: int, warmup: int, threads: int | None) -> dict[str, Latency]:
    """Decoupled query latency of every engine, each query run on all of them in rotating order (machine drift hits all alike)."""
    handles = {name: open_engine(path, threads=threads) for name, path in engines.items()}
    try:
        works = {name: QueryWorkload(h.runner, h.segmenter, shape, seed=0) for name, h in handles.items()}
        for w in works.values():
            w.index()
        times = {name: Latency([]) for name in engines}
        names = list(engines)
        for i in range(warmup + runs):
            draws = {name: w.draw() for name, w in works.items()}  # same seed: the same question and rows for every engine
            for name in names[i % len(names) :] + names[: i % len(names)]:
                t = works[name].decoupled(*draws[name])
                if i >= warmup:
                    times[name].seconds.append(t)
        return times
    finally:
        for h in handles.values():
            h.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path, help="An export directory (dtx export CKPT).")
    ap.add_argument("--data", required=True, help="Real pairs for the drift check (JSONL, TSV or BIG-bench task file).")
    ap.add_argument("--schemes", default=",".join(SCHEMES), help="Comma list of schemes (default: all of dtx.model.int8.SCHEMES).")
    ap.add_argument("--smooth", default="", help="Comma list of SmoothQuant alphas: the default scheme is also built smoothed at each (--int8-smooth).")
    ap.add_argument("--drift-pairs", type=int, default=200)
    ap.add_argument("--candidates", "-K", type=int, default=20)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", help="Write the table and every timing here.")
    args = ap.parse_args()
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    for s in schemes:
        SCHEMES.get(s) or ap.error(f"unknown scheme {s!r}; the schemes are {', '.join(SCHEMES)}")
    rows_built = variants(schemes, [float(a) for a in args.smooth.split(",") if a.strip()])

    with tempfile.TemporaryDirectory(prefix="dtx-int8-schemes-") as tmp:
        engines = build_all(args.export, Path(tmp), rows_built, args.data, args.drift_pairs, args.threads)
        drift = {name: open_engine(path, verify=False).manifest.verification for name, path in engines.items() if name != "fp32"}
        d = open_engine(engines["fp32"], verify=False).manifest.decoupling
        shape = Shape(min(SERVE_SEQ_Q, d.max_question_len), min(SERVE_SEQ_P, d.max_passage_len), args.candidates)
        times = time_interleaved(engines, shape, args.runs, args.warmup, args.threads)

    rows = [{"variant": "fp32", "decoupled_p50_ms": times["fp32"].to_dict()["p50_ms"], "speedup_vs_fp32": 1.0}]
    for name, (scheme, alpha) in rows_built.items():
        v = drift[name]["decoupled"]
        rows.append({"variant": f"int8 {name}", **SCHEMES[scheme].to_dict(), "smooth_alpha": alpha, "drift_max_abs": v["max_abs"], "top_answer_agreement": v["agreement"], "drift_pairs": v["pairs"],
                     "decoupled_p50_ms": times[name].to_dict()["p50_ms"], "speedup_vs_fp32": speedup(times["fp32"], times[name])})  # fmt: skip
    machine = machine_info() | {"threads": args.threads or "ONNX Runtime default"}
    title = f"{args.export}: decoupled path, {shape.seq_q} + {shape.seq_p} tokens, K={shape.candidates}, {args.runs} interleaved queries; {machine['cpu']['model']} ({machine['cpu']['int8_isa']})"
    emit(title, ["variant", "max-abs vs fp32", "same top answer", "p50 ms", "x fp32"],
         [[r["variant"], r.get("drift_max_abs", "-"), f"{100 * r['top_answer_agreement']:.1f}%" if "top_answer_agreement" in r else "-", r["decoupled_p50_ms"], r["speedup_vs_fp32"]] for r in rows])  # fmt: skip
    save_json(args.json, {"export": str(args.export), "data": args.data, "shape": vars(shape), "runs": args.runs, "machine": machine, "rows": rows, "timings": {k: v.to_dict() for k, v in times.items()}})


if __name__ == "__main__":
    main()
