"""Load on a running `dtx serve`: throughput and latency at several concurrencies, beside the same
queries answered by QueryPipeline in-process (what HTTP and batching add or save).

    dtx serve STORE --port 8000 &
    .venv/bin/python scripts/bench_serve.py --url http://127.0.0.1:8000 --store STORE \
        --queries ../shared/data/disfl_qa.task.json.gz --requests 96 --concurrency 1,4,16,64 \
        --json docs/results/serve-load.json --plot docs/results/serve-load.png

Every request is `POST /v1/rerank {query, top_k}`: BM25 candidates from the store, their cached
representations, the question through the input component, one cross call (merged with other
requests' by the server's micro-batcher). Errors are counted, never retried.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request

from dtx.data.pairs import read_pairs
from dtx.report import save_figure


def post(url: str, body: dict) -> tuple[int, float]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return status, (time.perf_counter() - started) * 1e3


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def load(url: str, questions: list[str], concurrency: int, top_k: int) -> dict:
    """`len(questions)` requests spread over `concurrency` client threads."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    work = iter(questions)

    def client() -> None:
        nonlocal errors
        while True:
            with lock:
                q = next(work, None)
            if q is None:
                return
            status, ms = post(url + "/v1/rerank", {"query": q, "top_k": top_k})
            with lock:
                latencies.append(ms)
                errors += status != 200

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency, "requests": len(questions), "errors": errors, "seconds": round(wall, 3),
        "throughput_qps": round(len(questions) / wall, 3), "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2), "mean_ms": round(statistics.fmean(latencies), 2),
    }  # fmt: skip


def direct(store: str, questions: list[str], top_k: int, threads: int | None) -> dict:
    """The same queries through QueryPipeline in this process, one at a time (no HTTP, no batching)."""
    from dtx.query import QueryPipeline

    latencies = []
    with QueryPipeline.open(store, threads=threads) as pipe:
        pipe.rerank(questions[0], top_k)  # warm-up, as the server has had its first request
        for q in questions:
            started = time.perf_counter()
            pipe.rerank(q, top_k)
            latencies.append((time.perf_counter() - started) * 1e3)
    return {"requests": len(questions), "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2), "mean_ms": round(statistics.fmean(latencies), 2)}


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["levels"]
    labels = [str(r["concurrency"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    bars = ax1.bar(labels, [r["throughput_qps"] for r in rows], color="tab:blue")
    ax1.bar_label(bars, fmt="%.1f", fontsize=8)
    ax1.set(xlabel="concurrent clients", ylabel="queries per second", title="throughput (POST /v1/rerank, top_k 20)")
    x = range(len(rows))
    ax2.bar([i - 0.2 for i in x], [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax2.bar([i + 0.2 for i in x], [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax2.axhline(report["direct"]["p50_ms"], color="black", linestyle="--", linewidth=1, label="in-process p50, one at a time")
    ax2.set_xticks(list(x), labels)
    ax2.set(xlabel="concurrent clients", ylabel="latency per request (ms)", title="latency")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--store", required=True, help="the store the server reads (for the in-process comparison)")
    ap.add_argument("--queries", required=True, help="questions: any pairs file dtx reads")
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--threads", type=int, help="ORT threads for the in-process run (give it what the server has)")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args()
    questions = list(dict.fromkeys(p.question for p in read_pairs(args.queries)))[: args.requests]
    levels = []
    for c in (int(x) for x in args.concurrency.split(",")):
        levels.append(load(args.url, questions, c, args.top_k))
        print(json.dumps(levels[-1]))
    report = {"url": args.url, "top_k": args.top_k, "levels": levels, "direct": direct(args.store, questions, args.top_k, args.threads)}
    print(json.dumps(report["direct"]))
    one = next((r for r in levels if r["concurrency"] == 1), None)
    if one:
        report["http_over_direct_p50"] = round(one["p50_ms"] / report["direct"]["p50_ms"], 3)
        print(f"HTTP p50 at concurrency 1 / in-process p50: {report['http_over_direct_p50']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
