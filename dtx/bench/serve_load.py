"""Load on a running `dtx serve`: throughput and latency at several concurrencies, beside the same
questions answered by QueryPipeline in this process, one at a time (what HTTP and batching add or save).

Every request is `POST /v1/rerank {query, top_k}`: BM25 candidates from the store, their cached
representations, the question through the input component, one cross call (merged with other
requests' by the server's micro-batcher). Clients are threads of this process using the standard
library's HTTP client, one connection per request; errors are counted, never retried.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tqdm import tqdm

from dtx.bench.stats import Latency
from dtx.errors import DtxError


@dataclass(frozen=True)
class ServeLoadConfig:
    url: str
    store: str | None  # the store the server reads: the in-process comparison opens it (None: skip it)
    questions: tuple[str, ...]
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    top_k: int = 20
    threads: int | None = None  # ORT threads of the in-process run: give it what the server has


def load_questions(path: str, split: str, limit: int) -> tuple[str, ...]:
    """The first `limit` distinct non-empty questions of a pairs file's `split` (dev: the held-out passages', what a dev store holds)."""
    from dtx.data.pairs import read_pairs
    from dtx.data.splits import split_by_passage
    from dtx.errors import DtxError

    pairs = read_pairs(path)
    if split != "all":
        pairs = dict(zip(("train", "dev"), split_by_passage(pairs)))[split]
    questions = tuple(q for q in dict.fromkeys(p.question for p in pairs) if q.strip())[:limit]
    if not questions:
        raise DtxError(f"{path} holds no {split} questions; pick another --split")
    return questions


def post(url: str, body: dict, timeout: float = 300) -> tuple[int, float]:
    """(HTTP status, seconds); status 0 when no response came (refused, reset, timed out)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return status, time.perf_counter() - started


def check_server(url: str) -> dict:
    """The server's /ready body, or a one-line error naming what to start."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ready", timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError) as e:
        raise DtxError(f"no dtx server ready at {url} ({e}); start one with `dtx serve STORE --port PORT`") from None


def load_level(url: str, questions: tuple[str, ...], concurrency: int, top_k: int) -> dict:
    """Every question once, spread over `concurrency` client threads that each send the next as soon as
    their last one is answered (a closed loop: offered load = concurrency)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    work = iter(questions)
    bar = tqdm(total=len(questions), desc=f"concurrency {concurrency}", unit="req", leave=False)

    def client() -> None:
        nonlocal errors
        while True:
            with lock:
                q = next(work, None)
            if q is None:
                return
            status, seconds = post(url.rstrip("/") + "/v1/rerank", {"query": q, "top_k": top_k})
            with lock:
                latencies.append(seconds)
                errors += status != 200
                bar.update()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    bar.close()
    lat = Latency(latencies)
    return {
        "concurrency": concurrency, "requests": len(questions), "errors": errors, "seconds": round(wall, 3),
        "throughput_qps": round(len(questions) / wall, 3),
        "p50_ms": round(1e3 * lat.p50, 2), "p99_ms": round(1e3 * lat.p99, 2),
    }  # fmt: skip


def in_process(store: str, questions: tuple[str, ...], top_k: int, threads: int | None) -> dict:
    """The same questions through QueryPipeline.rerank, one at a time: no HTTP, no batching."""
    from dtx.query import QueryPipeline

    seconds = []
    with QueryPipeline.open(store, threads=threads) as pipe:
        pipe.rerank(questions[0], top_k)  # warm-up, as the server has had its first request
        for q in tqdm(questions, desc="in-process", unit="req", leave=False):
            started = time.perf_counter()
            pipe.rerank(q, top_k)
            seconds.append(time.perf_counter() - started)
    lat = Latency(seconds)
    return {"requests": len(questions), "throughput_qps": round(lat.per_second, 3), "p50_ms": round(1e3 * lat.p50, 2), "p99_ms": round(1e3 * lat.p99, 2)}


def run_serve_load(cfg: ServeLoadConfig) -> dict:
    """Levels in the order given, then the in-process run (the server idle meanwhile)."""
    server = check_server(cfg.url)
    post(cfg.url.rstrip("/") + "/v1/rerank", {"query": cfg.questions[0], "top_k": cfg.top_k})  # warm-up
    levels = [load_level(cfg.url, cfg.questions, c, cfg.top_k) for c in cfg.concurrency]
    report: dict = {"url": cfg.url, "server": server, "top_k": cfg.top_k, "levels": levels}
    if cfg.store is not None:
        report["in_process"] = in_process(cfg.store, cfg.questions, cfg.top_k, cfg.threads)
        one = next((r for r in levels if r["concurrency"] == 1), None)
        if one:
            report["http_over_in_process_p50"] = round(one["p50_ms"] / report["in_process"]["p50_ms"], 3)
        sixteen = next((r for r in levels if r["concurrency"] == 16), None)
        if sixteen:
            report["throughput_16_over_sequential"] = round(sixteen["throughput_qps"] / report["in_process"]["throughput_qps"], 3)
    return report


def plot_serve_load(report: dict, path: str) -> None:
    """Throughput bars and p50/p99 bars per concurrency, the in-process figures as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dtx.report import save_figure

    rows = report["levels"]
    labels = [str(r["concurrency"]) for r in rows]
    x = list(range(len(rows)))
    direct = report.get("in_process")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    bars = ax1.bar(labels, [r["throughput_qps"] for r in rows], color="tab:blue")
    ax1.bar_label(bars, fmt="%.2f", fontsize=8, label_type="center", color="white")
    ax1.set(xlabel="concurrent clients", ylabel="queries per second", title=f"throughput (POST /v1/rerank, top_k {report['top_k']})")
    ax2.bar([i - 0.2 for i in x], [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax2.bar([i + 0.2 for i in x], [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax2.set_xticks(x, labels)
    ax2.set_yscale("log")  # closed-loop latency grows with the clients queued: 1 to 64 spans two decades
    ax2.set(xlabel="concurrent clients", ylabel="latency per request (ms, log scale)", title="latency")
    if direct:
        ax1.axhline(direct["throughput_qps"], color="black", linestyle="--", linewidth=1, label="in-process, one at a time")
        ax1.legend(fontsize=8, loc="lower right")
        ax2.axhline(direct["p50_ms"], color="black", linestyle="--", linewidth=1, label="in-process p50, one at a time")
    ax2.legend(fontsize=8, loc="upper left")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)
