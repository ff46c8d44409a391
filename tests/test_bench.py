"""The bench harness on tiny models: statistics, the report, bad flags, interruption."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dtx.bench.run import BenchConfig, run_bench, summary_rows
from dtx.bench.stats import Latency, gflops_per_second, speedup
from dtx.cli import main
from dtx.engines.cpu import int8_isa
from dtx.model.int8 import default_scheme


def test_percentiles_and_ratios():
    rng = np.random.default_rng(0)
    xs = list(rng.uniform(0.01, 0.2, 101))
    lat = Latency(xs)
    assert lat.p50 == pytest.approx(sorted(xs)[50])
    assert lat.p90 == pytest.approx(np.percentile(xs, 90)) and lat.p99 <= max(xs)
    assert lat.per_second == pytest.approx(101 / sum(xs))
    fast, slow = Latency([1.0, 2.0, 3.0]), Latency([4.0, 6.0, 8.0])
    assert speedup(slow, fast) == 3.0
    assert gflops_per_second(6_000_000_000, fast) == 3.0


def test_bench_report_on_tiny_export(exported, tmp_path):
    _, export_dir = exported("bert", 2, 2)
    report = run_bench(BenchConfig(target=str(export_dir), splits=[None], candidates=[3, 6], seq_q=12, seq_p=40, runs=4, warmup=1), progress=False)
    assert [r["candidates"] for r in report["rows"]] == [3, 6]
    for r in report["rows"]:
        assert r["decoupled"]["runs"] == r["coupled"]["runs"] == 4
        assert r["speedup"] == pytest.approx(r["coupled"]["p50_ms"] / r["decoupled"]["p50_ms"])
        assert r["layers"] == "2/2" and r["cache_bytes_per_passage"] == 40 * 16 * 2
        assert r["flop_ratio"] > 1 and r["index_ms_per_passage"] > 0
    headers, rows = summary_rows(report)
    assert len(rows) == 2 and len(rows[0]) == len(headers)
    json.dumps(report)


def test_bench_cli_writes_json_and_plot(exported, tmp_path):
    _, export_dir = exported("bert", 2, 2)
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    args = ["bench", str(export_dir), "-K", "2,4", "--seq-q", "10", "--seq-p", "20", "--runs", "2", "--json", str(out), "--plot", str(png)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output and "FLOP ratio" in result.output
    assert json.loads(out.read_text())["rows"][1]["candidates"] == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_int8_bench_reports_headline_against_fp32(exported, disfl_qa):
    _, export_dir = exported("bert", 2, 2)
    cfg = BenchConfig(target=str(export_dir), splits=[None], candidates=[3], seq_q=12, seq_p=30, runs=2, warmup=0, precision="int8", calib=str(disfl_qa))
    row = run_bench(cfg, progress=False)["rows"][0]
    assert row["coupled_fp32"]["runs"] == 2
    assert row["headline_speedup"] == pytest.approx(row["coupled_fp32"]["p50_ms"] / row["decoupled"]["p50_ms"])
    assert row["int8_scheme"] == default_scheme(int8_isa()).name  # the arithmetic timed, this CPU's default


def test_interrupt_keeps_what_was_measured(exported, monkeypatch):
    from dtx.bench import workload

    _, export_dir = exported("bert", 2, 2)
    calls = {"n": 0}
    original = workload.QueryWorkload.coupled

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(workload.QueryWorkload, "coupled", flaky)
    report = run_bench(BenchConfig(target=str(export_dir), splits=[None], candidates=[2], seq_q=8, seq_p=16, runs=10, warmup=0), progress=False)
    row = report["rows"][0]
    assert row["interrupted"] and row["coupled"]["runs"] == 3 and row["decoupled"]["runs"] == 3


def cli_error(args) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    return lines[-1]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--seq-p", "100"], "above the model's passage limit"),
        (["--seq-q", "40"], "above the model's question limit"),
        (["--split", "3"], "fixed at split 2"),
    ],
)
def test_bad_flags_on_an_export(exported, args, needle):
    _, export_dir = exported("bert", 2, 2)
    assert needle in cli_error(["bench", str(export_dir), *args])


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--arch", "bert-base", "--split", "13"], "outside 0..12"),
        (["--arch", "gpt-9"], "unknown --arch"),
        (["--arch", "bert-base", "--seq-q", "32", "--seq-p", "460"], "passage limit"),
        (["somewhere", "--arch", "bert-base"], "not both"),
    ],
)
def test_bad_flags_before_any_build(args, needle):
    assert needle in cli_error(["bench", *args])
