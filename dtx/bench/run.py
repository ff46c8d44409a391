"""`dtx bench`: time queries, decoupled vs coupled, interleaved in one run, and explain the ratio."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from dtx.bench.prepare import bench_question_window, bench_source, prepare
from dtx.bench.stats import Latency, gflops_per_second, speedup
from dtx.bench.workload import QueryWorkload, Shape
from dtx.cost import EncoderShape, check_split, query_cost
from dtx.engines import Engine, open_engine
from dtx.engines.build import BuildOptions
from dtx.errors import ConfigError
from dtx.engines.manifest import EngineManifest
from dtx.export.manifest import producers
from dtx.report import save_figure


@dataclass
class BenchConfig:
    target: str | None = None  # engine, export or checkpoint directory; None = --arch
    arch: str | None = None  # random-weight preset (dtx.model.presets)
    splits: list[int | None] = field(default_factory=lambda: [5])  # one split or several (a sweep); None = the target's
    compress: int = 1  # compression ratio of decoupled models built for the bench
    candidates: list[int] = field(default_factory=lambda: [20])  # K, or several for a sweep
    seq_q: int = 32
    seq_p: int = 150
    backend: str = "ort"
    precision: str = "fp32"
    calib: str | None = None
    runs: int = 20  # timed queries per configuration and path
    warmup: int = 2
    threads: int | None = None
    device: str = "cpu"
    seed: int = 0
    cuda_graphs: bool = True  # torch backend on CUDA
    fp32_baseline: bool = True  # also time the coupled model in fp32 (the headline) when precision is not fp32


def model_limits(cfg: BenchConfig) -> dict:
    """Layers and maximum lengths of what will be benchmarked, read before anything is built."""
    from dtx.engines.manifest import read_engine_manifest
    from dtx.export.manifest import read_manifest
    from dtx.model.checkpoint import read_meta
    from dtx.model.presets import PRESETS

    kind = bench_source(cfg.target)
    if kind == "arch":
        if cfg.arch not in PRESETS:
            raise ConfigError(f"unknown --arch {cfg.arch!r}; available are: {', '.join(PRESETS)}")
        q = bench_question_window(cfg.seq_q)
        positions = PRESETS[cfg.arch].get("max_position_embeddings", 512)
        if cfg.seq_q + cfg.seq_p > positions:
            raise ConfigError(f"--seq-q {cfg.seq_q} + --seq-p {cfg.seq_p} is more than the {positions} positions of {cfg.arch}; pass lengths that add up to at most {positions}")
        return {"num_layers": PRESETS[cfg.arch]["num_hidden_layers"], "max_question_len": q, "max_passage_len": positions - q, "fixed_split": None}
    read = {"engine": read_engine_manifest, "export": read_manifest, "checkpoint": read_meta}[kind]
    d = read(cfg.target).decoupling
    fixed = d.split if kind in ("engine", "export") else None
    return {"num_layers": d.num_layers, "max_question_len": d.max_question_len, "max_passage_len": d.max_passage_len, "fixed_split": fixed}


def default_splits(target: str | None, splits: list[int] | None) -> list[int | None]:
    """The splits asked for, else the target's own (None) when there is a target, else 5 for an --arch preset."""
    return splits or ([None] if target is not None else [5])


def splits_to_run(cfg: BenchConfig) -> list[int | None]:
    """An engine or export has one split (None: its own); a checkpoint or preset runs those configured."""
    return [None] if bench_source(cfg.target) in ("engine", "export") else cfg.splits


def validate(cfg: BenchConfig) -> None:
    lim = model_limits(cfg)
    for split in cfg.splits:
        if split is None:  # use the target's own split
            continue
        check_split(split, lim["num_layers"])
        if lim["fixed_split"] is not None and split != lim["fixed_split"]:
            raise ConfigError(f"{cfg.target} is fixed at split {lim['fixed_split']}; pass a checkpoint or --arch to sweep splits")
    if cfg.seq_q > lim["max_question_len"]:
        raise ConfigError(f"--seq-q {cfg.seq_q} is above the model's question limit of {lim['max_question_len']} tokens")
    if cfg.seq_p > lim["max_passage_len"]:
        raise ConfigError(f"--seq-p {cfg.seq_p} is above the model's passage limit of {lim['max_passage_len']} tokens")
    if min(cfg.seq_q, cfg.seq_p) < 3 or min(cfg.candidates) < 1 or cfg.runs < 1:
        raise ConfigError("--seq-q and --seq-p must be at least 3, --candidates and --runs at least 1")


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    """Every (split, K) configuration; returns a JSON-able report (partial if interrupted)."""
    validate(cfg)
    # drift of the bench's own int8/fp16 builds is checked on 64 pairs (dtx build-engine does 500)
    opts = BuildOptions(cfg.backend, cfg.precision, calib=cfg.calib, drift_pairs=64, threads=cfg.threads, device=cfg.device, batch=max(cfg.candidates), seq_q=cfg.seq_q, seq_p=cfg.seq_p, cuda_graphs=cfg.cuda_graphs)
    report = {"config": asdict(cfg), "rows": [], "interrupted": False, "machine": machine(cfg), "producers": producers()}
    splits = splits_to_run(cfg)
    with tempfile.TemporaryDirectory(prefix="dtx-bench-") as tmp:
        try:
            for split in splits:
                ready = prepare(cfg.target, cfg.arch, split, cfg.compress, opts, cfg.seq_q, Path(tmp), progress, cfg.fp32_baseline)
                report["source"] = ready.source
                engine = open_engine(ready.engine_dir, threads=cfg.threads)  # once per split: opening hashes every file
                baseline = open_engine(ready.baseline_dir, threads=cfg.threads).runner if ready.baseline_dir else None
                try:
                    for k in cfg.candidates:
                        report["rows"].append(measure(cfg, engine, baseline, k, progress))
                finally:
                    engine.close()
                    if baseline is not None:
                        baseline.close()
        except KeyboardInterrupt:
            report["interrupted"] = True
    return report


def measure(cfg: BenchConfig, engine: Engine, baseline, k: int, progress: bool) -> dict:
    """One (split, K) configuration: `baseline` is the fp32 engine's runner when `engine` is not fp32."""
    m = engine.manifest
    work = QueryWorkload(engine.runner, engine.segmenter, Shape(cfg.seq_q, cfg.seq_p, k), seed=cfg.seed)
    index_seconds = work.index()
    dec, cpl, cpl32 = Latency([]), Latency([]), Latency([])
    row = {"split": m.decoupling.split, "candidates": k}
    try:
        for i in tqdm(range(cfg.warmup + cfg.runs), desc=f"bench split {row['split']} K={k}", unit="query", disable=not progress):
            q, rows = work.draw()
            order = [("dec", work.decoupled), ("cpl", work.coupled)] if i % 2 == 0 else [("cpl", work.coupled), ("dec", work.decoupled)]
            if baseline is not None:
                order.append(("cpl32", lambda q, r: work.coupled(q, r, baseline)))
            for name, fn in order:  # interleaved, alternating order: drift in machine speed hits both
                t = fn(q, rows)
                if i >= cfg.warmup:
                    {"dec": dec, "cpl": cpl, "cpl32": cpl32}[name].seconds.append(t)
    except KeyboardInterrupt:
        row["interrupted"] = True
        if not dec.seconds or not cpl.seconds:
            raise
    return row | explain(m, cfg, k, dec, cpl, cpl32 if baseline else None, index_seconds)


def explain(m: EngineManifest, cfg: BenchConfig, k: int, dec: Latency, cpl: Latency, cpl32: Latency | None, index_seconds: float) -> dict:
    d, model = m.decoupling, m.export.model
    shape = EncoderShape(model.num_layers, model.hidden_size, model.intermediate_size, m.export.rep_dim)
    store_dtype = "int8" if cfg.precision == "int8" else "fp16"
    cost = query_cost(shape, d.split, cfg.seq_q, cfg.seq_p, k, store_dtype)
    n = min(len(dec.seconds), len(cpl.seconds))
    dec, cpl = Latency(dec.seconds[:n]), Latency(cpl.seconds[:n])
    out = {
        "layers": f"{d.split}/{model.num_layers - d.split}",
        "compress": d.compress,
        "decoupled": dec.to_dict(),
        "coupled": cpl.to_dict(),
        "speedup": speedup(cpl, dec),
        "flop_ratio": cost.flop_ratio,
        "token_layer_ratio": cost.token_layer_ratio,
        "decoupled_gflops": gflops_per_second(cost.decoupled_flops, dec),
        "coupled_gflops": gflops_per_second(cost.coupled_flops, cpl),
        "cache_bytes_per_passage": cost.cache_bytes_per_passage,
        "cache_dtype": store_dtype,
        "index_ms_per_passage": 1e3 * index_seconds,
        "index_gflop_per_passage": cost.passage_index_flops / 1e9,
        "int8_scheme": (m.reports.get("int8_scheme") or {}).get("name"),  # the arithmetic timed: speed and saturation depend on it
    }
    if cpl32 is not None and cpl32.seconds:
        cpl32 = Latency(cpl32.seconds[:n])
        out["coupled_fp32"] = cpl32.to_dict()
        out["headline_speedup"] = speedup(cpl32, dec)
        out["precision_speedup_coupled"] = speedup(cpl32, cpl)
    return out


def machine(cfg: BenchConfig) -> dict:
    """Platform and CPU; on CUDA the card, its driver and the torch build (dtx.bench.machine)."""
    from dtx.bench.machine import machine_info

    from dtx.engines.backends import get_backend

    runtime = "ONNX Runtime" if get_backend(cfg.backend).runs_onnx else "PyTorch"
    return machine_info(cfg.device) | {"threads": cfg.threads or f"{runtime} default (one per core)"}


def summary_rows(report: dict) -> tuple[list[str], list[list]]:
    """The terminal table: one row per (split, K)."""
    headers = ["layers", "K", "dec p50 ms", "dec p90", "dec p99", "coupled p50 ms", "speed-up", "FLOP ratio", "dec GFLOP/s", "coupled GFLOP/s", "cache B/passage", "index ms/passage"]
    has32 = any("coupled_fp32" in r for r in report["rows"])
    if has32:
        headers += ["coupled fp32 p50", "vs fp32 coupled"]
    rows = []
    for r in report["rows"]:
        row = [
            r["layers"], r["candidates"], r["decoupled"]["p50_ms"], r["decoupled"]["p90_ms"], r["decoupled"]["p99_ms"],
            r["coupled"]["p50_ms"], f"{r['speedup']:.2f}x", f"{r['flop_ratio']:.2f}x", r["decoupled_gflops"], r["coupled_gflops"],
            r["cache_bytes_per_passage"], r["index_ms_per_passage"],
        ]
        if has32:
            row += [r.get("coupled_fp32", {}).get("p50_ms", "-"), f"{r['headline_speedup']:.2f}x" if "headline_speedup" in r else "-"]
        rows.append(row)
    return headers, rows


def plot(report: dict, path: str) -> None:
    """Latency and speed-up against split (or against K when only K varies)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'dtx[plot]'") from None
    rows = report["rows"]
    by_k = len({r["split"] for r in rows}) == 1 and len(rows) > 1
    x = [r["candidates"] if by_k else r["split"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(x, [r["decoupled"]["p50_ms"] for r in rows], "o-", label="decoupled p50")
    a.plot(x, [r["coupled"]["p50_ms"] for r in rows], "s--", label="coupled p50")
    a.set_ylabel("ms per query")
    b.plot(x, [r["speedup"] for r in rows], "o-", label="measured speed-up")
    b.plot(x, [r["flop_ratio"] for r in rows], "x:", label="FLOP ratio (cost model)")
    b.set_ylabel("coupled / decoupled")
    for ax in (a, b):
        ax.set_xlabel("candidates K" if by_k else "split N (input-component layers)")
        ax.grid(alpha=0.3)
        ax.legend()
    c = report["config"]
    fig.suptitle(f"{report.get('source', '')}: seq-q {c['seq_q']}, seq-p {c['seq_p']}, {c['backend']} {c['precision']}")
    save_figure(fig, path)
