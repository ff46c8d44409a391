"""The CPU-checkable parts of scripts/gpu_check.sh: it refuses to run without a GPU, and its summary
reads the bench JSON into speed-ups, bars and TFLOP/s against the peak, failing on a missing result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_summary  # noqa: E402


def _bench(layers_speed: dict[str, tuple[float, float]]) -> dict:
    rows = []
    for layers, (coupled_ms, decoupled_ms) in layers_speed.items():
        rows.append({"layers": layers, "candidates": 20, "coupled": {"p50_ms": coupled_ms}, "decoupled": {"p50_ms": decoupled_ms},
                     "speedup": coupled_ms / decoupled_ms, "coupled_gflops": 200_000.0, "decoupled_gflops": 150_000.0})  # fmt: skip
    return {"rows": rows}


def test_summary_reads_bars_and_peak(tmp_path):
    (tmp_path / "matmul-peak.json").write_text(json.dumps({"device": "NVIDIA H100", "peak_tflops": 800.0}))
    for name in gpu_summary.BENCHES:
        (tmp_path / name).write_text(json.dumps(_bench({"5/7": (2.0, 1.0), "9/3": (2.0, 0.8)})))
    s = gpu_summary.summarize(tmp_path)
    five, nine = s["rows"][0], s["rows"][1]
    assert five["speedup_bar_met"] is True and nine["speedup_bar_met"] is False and nine["latency_bar_met"] is True
    assert five["coupled_tflops"] == pytest.approx(200.0) and five["coupled_peak_pct"] == pytest.approx(25.0)
    (tmp_path / "bench-aoti-fp16.json").unlink()
    with pytest.raises(SystemExit, match="AOTInductor fp16 bench did not finish"):
        gpu_summary.summarize(tmp_path)


def test_gpu_check_fails_loudly_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: gpu_check.sh runs for real there")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                            env={"DTX_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode != 0 and "no CUDA GPU" in result.stderr
