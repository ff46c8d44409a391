"""Benchmarks: bench (decoupled vs coupled latency), bench-store (gather), bench-serve (HTTP load)."""

from __future__ import annotations

from pathlib import Path

import click

from dtx.commands.common import OUTPUT_FILE, check_store_writable, int_list, quiet_transformers
from dtx.data.splits import SPLITS
from dtx.engines.manifest import BACKENDS, DEVICES, PRECISIONS
from dtx.store.quantize import DTYPES


@click.command()
@click.argument("target", required=False, type=click.Path(file_okay=False))
@click.option("--arch", help="Random-weight preset to build when no TARGET is given (bert-base, bert-large, electra-base, electra-small, minilm-l6).")
@click.option("--split", "-n", "splits", callback=int_list, help="Split N, or a comma list for a sweep (e.g. 1,3,5,7,9,11).")
@click.option("--compress", "-k", type=click.IntRange(1), default=1, show_default=True, help="Compression ratio of models decoupled for the bench.")
@click.option("--candidates", "-K", callback=int_list, default="20", show_default=True, help="Passages per query, or a comma list for a sweep.")
@click.option("--seq-q", type=click.IntRange(3), default=32, show_default=True, help="Question tokens (specials included).")
@click.option("--seq-p", type=click.IntRange(3), default=150, show_default=True, help="Passage tokens (specials included).")
@click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--calib", type=click.Path(dir_okay=False), help="Real pairs for INT8 calibration (required with --precision int8).")
@click.option("--runs", "-r", type=click.IntRange(1), default=20, show_default=True, help="Timed queries per configuration.")
@click.option("--warmup", type=click.IntRange(0), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: one per core).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True, help="Torch backend on CUDA: replay captured CUDA graphs.")
@click.option("--fp32-baseline/--no-fp32-baseline", default=True, show_default=True, help="With --precision fp16/int8: also time the coupled model in fp32 (builds a second engine).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Write the full report (every timing) as JSON.")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, help="Write a PNG of latency and speed-up vs split (or K).")
def bench(target, arch, splits, compress, candidates, seq_q, seq_p, backend, precision, calib, runs, warmup, threads, device, cuda_graphs, fp32_baseline, json_path, plot_path):
    """Per-query latency, decoupled vs coupled, on an engine, export, checkpoint or --arch preset.

    With neither TARGET nor --arch: the one engine in the working directory (what `dtx build-engine` wrote there).
    """
    quiet_transformers()
    from dtx.artifacts import find_artifact
    from dtx.bench.run import BenchConfig, default_splits, plot, run_bench, summary_rows
    from dtx.report import emit, save_json

    if target is not None and arch is not None:
        raise click.UsageError("pass TARGET (engine, export or checkpoint directory) or --arch PRESET, not both")
    if target is None and arch is None:
        target = str(find_artifact("engine"))
        click.echo(f"engine: {target} (the one in this directory)")
    cfg = BenchConfig(
        target=target, arch=arch, splits=default_splits(target, splits), compress=compress, candidates=candidates, seq_q=seq_q, seq_p=seq_p, backend=backend, precision=precision,
        calib=calib, runs=runs, warmup=warmup, threads=threads, device=device, cuda_graphs=cuda_graphs, fp32_baseline=fp32_baseline,
    )  # fmt: skip
    report = run_bench(cfg)
    if not report["rows"]:
        click.echo("interrupted before any configuration finished")
        return
    headers, rows = summary_rows(report)
    note = " (INTERRUPTED: partial)" if report["interrupted"] or any(r.get("interrupted") for r in report["rows"]) else ""
    emit(f"{report['source']}, {backend} {precision}, seq-q {seq_q} + seq-p {seq_p}, {runs} queries{note}", headers, rows)
    if any("headline_speedup" in r for r in report["rows"]):
        for r in report["rows"]:
            scheme = f" ({r['int8_scheme']}, {report['machine']['cpu']['int8_isa']})" if r.get("int8_scheme") else ""
            click.echo(f"headline: decoupled {precision}{scheme} vs coupled fp32 at {r['layers']}, K={r['candidates']}: {r['headline_speedup']:.2f}x")
    save_json(json_path, report)
    if plot_path:
        plot(report, plot_path)
        click.echo(f"wrote {plot_path}")


@click.command("bench-serve")
@click.argument("url")
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help="Questions: any pairs file dtx reads (each distinct question once).")
@click.option("--split", type=click.Choice(SPLITS), default="dev", show_default=True, help="Whose questions: the held-out passages' (what a dev store holds) or the rest.")
@click.option("--store", help="The store the server reads: also answer the questions in-process with it, one at a time, for the HTTP overhead and batching gain.")
@click.option("-n", "--requests", type=click.IntRange(1), default=96, show_default=True, help="Requests per concurrency level.")
@click.option("-c", "--concurrency", default="1,4,16,64", show_default=True, help="Comma-separated client counts.")
@click.option("-K", "--top-k", type=click.IntRange(1), default=20, show_default=True, help="BM25 candidates per request.")
@click.option("--threads", type=click.IntRange(1), help="ORT threads of the in-process run (give it what the server has).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, help="Throughput and latency bars per concurrency (PNG).")
def bench_serve(url, queries, split, store, requests, concurrency, top_k, threads, json_path, plot_path):
    """Load a running `dtx serve` at URL: throughput, p50/p99 and errors per number of concurrent clients."""
    from dtx.bench.serve_load import ServeLoadConfig, load_questions, plot_serve_load, run_serve_load
    from dtx.report import emit, save_json

    quiet_transformers()
    try:
        levels = tuple(int(c) for c in concurrency.split(","))
    except ValueError:
        raise click.BadParameter(f"{concurrency!r} is not a comma-separated list of client counts, e.g. 1,4,16", param_hint="--concurrency") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("client counts must be >= 1", param_hint="--concurrency")
    questions = load_questions(queries, split, requests)
    r = run_serve_load(ServeLoadConfig(url=url, store=store, questions=questions, concurrency=levels, top_k=top_k, threads=threads))
    rows = [[lv["concurrency"], lv["requests"], lv["errors"], lv["throughput_qps"], lv["p50_ms"], lv["p99_ms"]] for lv in r["levels"]]
    if "in_process" in r:
        d = r["in_process"]
        rows.append(["in-process, sequential", d["requests"], 0, d["throughput_qps"], d["p50_ms"], d["p99_ms"]])
    emit(f"POST /v1/rerank on {url}, top_k {top_k}", ["clients", "requests", "errors", "queries/s", "p50 ms", "p99 ms"], rows)
    if "http_over_in_process_p50" in r:
        click.echo(f"HTTP p50 at 1 client / in-process p50: {r['http_over_in_process_p50']:.3f}")
    if "throughput_16_over_sequential" in r:
        click.echo(f"throughput at 16 clients / in-process sequential: {r['throughput_16_over_sequential']:.3f}")
    save_json(json_path, r)
    if plot_path:
        plot_serve_load(r, plot_path)
        click.echo(f"wrote {plot_path}")


@click.command("bench-store")
@click.argument("target", required=False)
@click.option("--arch", help="Random-weight preset to build when no engine is given (e.g. bert-base).")
@click.option("-n", "--split", type=click.IntRange(0), help="Split of the model decoupled for the bench.")
@click.option("-k", "--compress", type=click.IntRange(1), default=4, show_default=True, help="Compression of the model decoupled for the bench.")
@click.option("--store", required=True, help="Timing store to build (resumably) and read: random representations.")
@click.option("--passages", type=click.IntRange(1), default=1_000_000, show_default=True, help="Passages in the timing store.")
@click.option("--seq-p", type=click.IntRange(3), default=150, show_default=True, help="Tokens per stored passage.")
@click.option("-K", "--candidates", type=click.IntRange(1), default=20, show_default=True, help="Passages fetched per query.")
@click.option("--dtype", type=click.Choice(DTYPES), default="int8", show_default=True)
@click.option("-r", "--runs", type=click.IntRange(1), default=200, show_default=True, help="Timed queries.")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def bench_store(target, arch, split, compress, store, passages, seq_p, candidates, dtype, runs, threads, json_path):
    """Gather latency of K cached passages from a large store, against the decoupled query it feeds."""
    import tempfile

    from dtx.bench.gather import GatherConfig, time_gather
    from dtx.bench.prepare import prepare
    from dtx.engines.build import SERVE_SEQ_Q, BuildOptions
    from dtx.report import emit, save_json

    quiet_transformers()
    if (target is None) == (arch is None):
        raise click.UsageError("pass TARGET (an engine) or --arch PRESET, one of them")
    cfg = GatherConfig(store=store, passages=passages, seq_p=seq_p, candidates=candidates, dtype=dtype, runs=runs, seq_q=SERVE_SEQ_Q)
    cfg.check()
    check_store_writable(store, "--store")
    with tempfile.TemporaryDirectory(prefix="dtx-bench-store-") as work:
        engine_dir = prepare(target, arch, split, compress, BuildOptions(threads=threads), SERVE_SEQ_Q, Path(work), True).engine_dir
        r = time_gather(cfg, engine_dir, threads)
    f, q = r["fetch"], r["decoupled_query"]
    emit(
        f"{r['passages_in_store']:,} passages ({r['dtype']}, {r['seq_p']} x {r['rep_dim']}), K={candidates}, {runs} queries",
        ["path", "p50 ms", "p99 ms"],
        [["fetch K cached passages", f["p50_ms"], f["p99_ms"]], ["decoupled query (input + cross)", q["p50_ms"], q["p99_ms"]]],
    )
    click.echo(f"fetch adds {100 * r['fetch_over_query_p50']:.1f}% to the decoupled query (p50 / p50, same run)")
    save_json(json_path, r)
