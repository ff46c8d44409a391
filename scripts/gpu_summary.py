"""Read a gpu_check.sh result folder into one table: speed-ups and latency against the bars, achieved
TFLOP/s against the peak measured in the same run, fp16 drift against fp32, the card named beside it.

Prints the table and writes summary.json beside the inputs. A result that is missing, cut short
("complete": false) or a step that failed makes the exit status 1: a GPU path that broke must not
read as one that was skipped. Bars met or not is a figure, not a failure.

    python3 scripts/gpu_summary.py OUT_DIR [--steps WORK/steps.tsv] [--rehearsal]
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # dtx runs from the tree on the GPU machine

from dtx.report import emit, save_json  # noqa: E402

# result file -> (path in words, step that writes it, required)
BENCHES = {
    "bench-torch-graphs.json": ("torch, CUDA graphs", "torch-graphs", True),
    "bench-aoti.json": ("AOTInductor", "aoti", True),
    "bench-torch-eager.json": ("torch eager", "torch-eager", True),
    "bench-int8.json": ("torch INT8 W8A8 (_int_mm), CUDA graphs", "int8", False),
}
PEAK_FILE, TESTS_FILE, SUMMARY_FILE = "matmul-peak.json", "gpu-tests.xml", "summary.json"
BARS = {"5/7": 1.6, "9/3": 3.3}  # decoupled over coupled, K = 20, seq-q 32 + seq-p 150, fp16, same backend both sides (issue 22)
LATENCY_BAR_MS = {"9/3": 1.0}  # decoupled ms per query
DRIFT_BAR = {"fp16": 2e-2}  # max-abs of every output vs the fp32 export: the tolerance of tests/test_engines.py's fp16 GPU tests
ALLOWED_SKIPS = ("TensorRT is not installed",)  # the one GPU test a GPU machine here may skip


def read_steps(path: Path | None) -> dict[str, dict]:
    """steps.tsv as gpu_check.sh writes it: name, status, seconds, timeout."""
    steps = {}
    if path is not None and path.is_file():
        for line in path.read_text().splitlines():
            name, status, secs, limit = (line.split("\t") + ["", "", "", ""])[:4]
            steps[name] = {"status": status, "seconds": secs, "timeout_s": limit}
    return steps


def read_tests(path: Path, rehearsal: bool) -> dict:
    """The junit XML of the GPU-marked tests: counts, each skip with its reason, and whether a skip is not allowed."""
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": [], "bad_skips": []}
    for case in cases:
        out["tests"] += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        out["failures"] += len(case.findall("failure"))
        out["errors"] += len(case.findall("error"))
        for s in case.findall("skipped"):
            reason = s.get("message", "")
            out["skipped"].append({"test": name, "reason": reason})
            if not rehearsal and not any(a in reason for a in ALLOWED_SKIPS):
                out["bad_skips"].append(name)
    return out


def drift_of(row: dict) -> dict:
    """Worst max-abs over both paths and the lower prediction agreement, from the row's engine verification."""
    v = (row.get("engine") or {}).get("verification") or {}
    if v.get("kind") == "parity":
        return {"kind": "parity", "max_abs": v.get("worst_max_abs"), "agreement": None}
    if v.get("kind") == "drift":
        paths = [v[p] for p in ("decoupled", "coupled") if p in v]
        return {"kind": "drift", "max_abs": max(p["max_abs"] for p in paths), "agreement": min(p["agreement"] for p in paths)}
    return {"kind": None, "max_abs": None, "agreement": None}


def summarize(folder: Path, steps: dict[str, dict] | None = None, rehearsal: bool = False) -> dict:
    steps = steps or {}
    broken: list[str] = []
    notes: list[str] = []
    for name, s in steps.items():
        if not s["status"].startswith(("ok", "skipped")):
            broken.append(f"step {name}: {s['status']}")
    peak = None
    if (folder / PEAK_FILE).is_file():
        peak = json.loads((folder / PEAK_FILE).read_text())
    else:
        broken.append(f"{PEAK_FILE} is missing: the matrix-multiply peak did not run")
    rows, machines = [], {}
    for file, (words, step, required) in BENCHES.items():
        f = folder / file
        skipped = steps.get(step, {}).get("status", "").startswith("skipped")
        if not f.is_file():
            if skipped:
                notes.append(f"{words}: not measured ({steps[step]['status']})")
            elif required:
                broken.append(f"{file} is missing: the {words} bench did not finish")
            else:
                notes.append(f"{words}: not measured (no result file)")
            continue
        report = json.loads(f.read_text())
        machines[file] = report.get("machine", {})
        if not report.get("complete", True) or not report.get("rows"):
            broken.append(f"{file} is incomplete ({len(report.get('rows', []))} of {len(report.get('config', {}).get('splits', []))} splits): the {words} bench was cut short or broke")
        if file == "bench-int8.json":
            notes.append(f"INT8: W8A8 dynamic on torch._int_mm (torchao importable here: {'yes' if report.get('torchao_importable') else 'no'}; not used)")
        for r in report.get("rows", []):
            precision = r.get("precision") or report.get("precision") or report.get("config", {}).get("precision")
            dec, cou = r["decoupled"]["p50_ms"], r["coupled"]["p50_ms"]
            bar = BARS.get(r["layers"])
            drift = drift_of(r)
            drift_bar = DRIFT_BAR.get(precision)
            row = {
                "path": words, "file": file, "precision": precision, "layers": r["layers"], "K": r["candidates"],
                "coupled_ms": cou, "decoupled_ms": dec, "speedup": r["speedup"], "flop_ratio": r.get("flop_ratio"),
                "speedup_bar": bar, "speedup_bar_met": None if bar is None else r["speedup"] >= bar,
                "latency_bar_ms": LATENCY_BAR_MS.get(r["layers"]), "latency_bar_met": None if r["layers"] not in LATENCY_BAR_MS else dec < LATENCY_BAR_MS[r["layers"]],
                "coupled_tflops": r["coupled_gflops"] / 1e3, "decoupled_tflops": r["decoupled_gflops"] / 1e3,
                "coupled_fp32_ms": r.get("coupled_fp32", {}).get("p50_ms"), "headline_speedup": r.get("headline_speedup"),
                "drift_kind": drift["kind"], "drift_max_abs": drift["max_abs"], "drift_agreement": drift["agreement"],
                "drift_bar": drift_bar, "drift_bar_met": None if drift_bar is None or drift["max_abs"] is None else drift["max_abs"] <= drift_bar,
            }  # fmt: skip
            if peak:
                row["coupled_peak_pct"] = 100 * row["coupled_tflops"] / peak["peak_tflops"]
                row["decoupled_peak_pct"] = 100 * row["decoupled_tflops"] / peak["peak_tflops"]
            rows.append(row)
    if peak is not None:
        machines[PEAK_FILE] = peak.get("machine", {})
    tests = None
    if (folder / TESTS_FILE).is_file():
        tests = read_tests(folder / TESTS_FILE, rehearsal)
        if tests["failures"] or tests["errors"]:
            broken.append(f"GPU tests: {tests['failures']} failed, {tests['errors']} errors")
        if tests["bad_skips"]:
            broken.append(f"GPU tests skipped on a GPU machine: {', '.join(tests['bad_skips'])}")
    elif steps.get("tests", {}).get("status", "").startswith("skipped"):
        notes.append(f"GPU tests: not run ({steps['tests']['status']})")
    else:
        broken.append(f"{TESTS_FILE} is missing: the GPU-marked tests did not run")
    machine = next(iter(machines.values()), {})
    for file, m in machines.items():
        if not rehearsal and not (m.get("gpu") and m.get("torch")):
            broken.append(f"{file}: its machine field names no GPU and torch")
        if not rehearsal and not m.get("driver"):
            notes.append(f"{file}: no driver version (nvidia-smi absent?)")
    device = machine.get("gpu") or (peak or {}).get("device") or machine.get("processor", "?")
    return {
        "rehearsal": rehearsal, "device": device, "driver": machine.get("driver"), "torch": machine.get("torch"), "machine": machine,
        "peak_tflops": peak["peak_tflops"] if peak else None, "peak_dtype": peak.get("dtype") if peak else None,
        "bars": {"speedup": BARS, "decoupled_ms": LATENCY_BAR_MS, "drift_max_abs": DRIFT_BAR},
        "rows": rows, "tests": tests, "steps": steps, "notes": notes, "broken": broken,
    }  # fmt: skip


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def table(s: dict) -> tuple[str, list[str], list[list]]:
    peak = f"measured {s['peak_dtype']} matmul peak {s['peak_tflops']:.1f} TFLOP/s" if s["peak_tflops"] else "no measured peak"
    who = f"{s['device']}, driver {s['driver'] or '?'}, torch {s['torch'] or '?'}"
    title = f"{who}: K = 20, seq-q 32 + seq-p 150, BERT-base shape; {peak}"
    if s["rehearsal"]:
        title = f"REHEARSAL (CPU, tiny 12-layer model: the bars do not apply) - {title}"
    headers = ["path", "prec", "layers", "coupled ms", "decoupled ms", "speed-up", "bar", "dec < 1 ms", "dec TFLOP/s (% peak)", "coupled TFLOP/s (% peak)", "coupled fp32 ms (vs)", "drift max-abs (agree)", "drift bar"]
    pct = lambda r, k: f"{r[k + '_tflops']:.2f} ({r[k + '_peak_pct']:.1f}%)" if k + "_peak_pct" in r else f"{r[k + '_tflops']:.2f}"  # noqa: E731
    rows = []
    for r in s["rows"]:
        rows.append([
            r["path"], r["precision"], r["layers"], f"{r['coupled_ms']:.3f}", f"{r['decoupled_ms']:.3f}", f"{r['speedup']:.2f}x",
            f">= {r['speedup_bar']}x {_met(r['speedup_bar_met'])}" if r["speedup_bar"] else "-", _met(r["latency_bar_met"]),
            pct(r, "decoupled"), pct(r, "coupled"),
            f"{r['coupled_fp32_ms']:.3f} ({r['headline_speedup']:.2f}x)" if r["coupled_fp32_ms"] is not None else "-",
            "-" if r["drift_max_abs"] is None else f"{r['drift_max_abs']:.2g}" + ("" if r["drift_agreement"] is None else f" ({100 * r['drift_agreement']:.0f}%)"),
            f"<= {r['drift_bar']:g} {_met(r['drift_bar_met'])}" if r["drift_bar"] else ("parity" if r["drift_kind"] == "parity" else "-"),
        ])  # fmt: skip
    return title, headers, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--steps", type=Path, help="gpu_check.sh's steps.tsv (each step's outcome and seconds).")
    ap.add_argument("--rehearsal", action="store_true", help="A CPU rehearsal: GPU-test skips and a missing GPU name are expected.")
    args = ap.parse_args()
    s = summarize(args.folder, read_steps(args.steps), args.rehearsal)
    emit(*table(s))
    if s["steps"]:
        emit("steps", ["step", "outcome", "seconds", "timeout s"], [[k, v["status"], v["seconds"], v["timeout_s"]] for k, v in s["steps"].items()])
    t = s["tests"]
    if t is not None:
        print(f"GPU-marked tests: {t['tests']} run, {t['failures']} failed, {t['errors']} errors, {len(t['skipped'])} skipped" + (f" ({t['skipped'][0]['reason']})" if t["skipped"] else ""))
    for n in s["notes"]:
        print(f"note: {n}")
    for b in s["broken"]:
        print(f"BROKEN: {b}")
    save_json(str(args.folder / SUMMARY_FILE), s)
    if s["broken"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
