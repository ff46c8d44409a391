"""The matrix-multiply peak of this device, measured: the ceiling an achieved TFLOP/s is read against.

Square bf16 (GPU) or fp32 (CPU) products of growing size, timed after warm-up (CUDA events on a
GPU); the best rate over sizes is the peak. Vendor datasheet peaks assume clocks and shapes a
transformer never sees, so dtx compares each path with this measured figure instead.

    python3 scripts/matmul_peak.py --device cuda --json OUT_DIR/matmul-peak.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dtx runs from the tree on the GPU machine
from dtx.bench.machine import machine_info  # noqa: E402
from dtx.report import emit, save_json  # noqa: E402


def rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """TFLOP/s of an n x n x n product (2 n^3 FLOPs), median of `repeats` timed runs."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", default=None, help="Comma list of n (default: 2048..16384 on GPU, 256..2048 on CPU).")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("matmul_peak: --device cuda, but torch sees no CUDA GPU")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    default = "2048,4096,8192,16384" if device.type == "cuda" else "256,512,1024,2048"
    sizes = [int(x) for x in (args.sizes or default).split(",")]
    rows = [{"n": n, "tflops": rate(n, dtype, device, args.repeats)} for n in sizes]
    peak = max(r["tflops"] for r in rows)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    emit(f"matrix-multiply rate on {name} ({str(dtype).replace('torch.', '')})", ["n", "TFLOP/s"], [[r["n"], f"{r['tflops']:.2f}"] for r in rows])
    print(f"peak: {peak:.2f} TFLOP/s")
    save_json(args.json, {"device": name, "dtype": str(dtype).replace("torch.", ""), "rows": rows, "peak_tflops": peak, "machine": machine_info(device.type)})


if __name__ == "__main__":
    main()
