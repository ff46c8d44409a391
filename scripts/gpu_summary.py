"""Read a gpu_check.sh result folder: speed-ups, latency and achieved TFLOP/s against the measured peak, and the bars.

Prints one table (and writes summary.json beside the inputs). A missing or empty result file is
an error: a GPU path that broke must not read as a path that was skipped.

    .venv/bin/python scripts/gpu_summary.py runs/gpu-check
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dtx.report import emit, save_json

BENCHES = {"bench-torch-fp16-cuda-graphs.json": "torch fp16, CUDA graphs", "bench-torch-fp16-eager.json": "torch fp16, eager", "bench-aoti-fp16.json": "AOTInductor fp16"}
BARS = {"5/7": 1.6, "9/3": 3.3}  # decoupled over coupled, K = 20, seq-q 32 + seq-p 150 (issue 12)
LATENCY_BAR_MS = {"9/3": 1.0}


def summarize(folder: Path) -> dict:
    peak_file = folder / "matmul-peak.json"
    if not peak_file.is_file():
        raise SystemExit(f"{peak_file} is missing: the matrix-multiply peak did not run")
    peak = json.loads(peak_file.read_text())
    rows = []
    for name, path_name in BENCHES.items():
        f = folder / name
        if not f.is_file():
            raise SystemExit(f"{f} is missing: the {path_name} bench did not finish")
        report = json.loads(f.read_text())
        if not report.get("rows"):
            raise SystemExit(f"{f} has no rows: the {path_name} bench broke")
        for r in report["rows"]:
            dec, cou = r["decoupled"]["p50_ms"], r["coupled"]["p50_ms"]
            bar = BARS.get(r["layers"])
            rows.append({
                "path": path_name, "layers": r["layers"], "K": r["candidates"], "coupled_ms": cou, "decoupled_ms": dec, "speedup": r["speedup"],
                "coupled_tflops": r["coupled_gflops"] / 1e3, "decoupled_tflops": r["decoupled_gflops"] / 1e3,
                "coupled_peak_pct": 100 * r["coupled_gflops"] / 1e3 / peak["peak_tflops"], "decoupled_peak_pct": 100 * r["decoupled_gflops"] / 1e3 / peak["peak_tflops"],
                "speedup_bar": bar, "speedup_bar_met": None if bar is None else r["speedup"] >= bar,
                "latency_bar_met": None if r["layers"] not in LATENCY_BAR_MS else dec < LATENCY_BAR_MS[r["layers"]],
            })  # fmt: skip
    return {"device": peak["device"], "peak_tflops": peak["peak_tflops"], "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    s = summarize(args.folder)
    fmt = lambda ok: "-" if ok is None else ("met" if ok else "NOT met")  # noqa: E731
    emit(
        f"{s['device']}: K = 20, seq-q 32 + seq-p 150, BERT-base shape; measured bf16 matmul peak {s['peak_tflops']:.0f} TFLOP/s",
        ["path", "layers", "coupled ms", "decoupled ms", "speed-up", "bar", "coupled TFLOP/s (% peak)", "decoupled TFLOP/s (% peak)", "< 1 ms"],
        [[r["path"], r["layers"], f"{r['coupled_ms']:.3f}", f"{r['decoupled_ms']:.3f}", f"{r['speedup']:.2f}x", f"{r['speedup_bar']}x {fmt(r['speedup_bar_met'])}" if r["speedup_bar"] else "-",
          f"{r['coupled_tflops']:.1f} ({r['coupled_peak_pct']:.0f}%)", f"{r['decoupled_tflops']:.1f} ({r['decoupled_peak_pct']:.0f}%)", fmt(r["latency_bar_met"])] for r in s["rows"]],
    )  # fmt: skip
    save_json(str(args.folder / "summary.json"), s)


if __name__ == "__main__":
    main()
