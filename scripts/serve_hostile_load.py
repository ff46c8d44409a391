"""Hostile load on `dtx serve`, loopback only: valid requests mixed with requests at and past every limit.

    .venv/bin/python scripts/serve_hostile_load.py STORE [--engine ENGINE] --clients 64 --seconds 60 --json out.json

Starts `dtx serve` on 127.0.0.1 (a free port), reads its limits from /ready, answers each distinct
valid request alone first, then runs `--clients` closed-loop clients for `--seconds`: each sends a
random kind of request, valid (inline documents, BM25, the TEI route, a query at the body limit,
documents at the count limit) or hostile (a body, a document, a document count, a top_k and a token
total each one past its limit; a misspelt field, a wrong type, a stored id twice, malformed JSON;
a client that sends a slow request and hangs up). The expensive valid kind, documents just under
the passage-token limit, is sent once (by the first client). Passes when no answer is a 5xx, every valid
request is a 200 equal (ranking, scores within 1e-4) to the same request sent alone, every hostile
one the 4xx it should be; the server's RSS (/proc/PID/status) is sampled throughout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WORDS = "river valley mountain quantum oxygen discovered century harbour painter treaty engine glacier".split()


@dataclass
class Probe:
    """One request kind: how to make its body, and the status it must get."""

    name: str
    path: str
    body: bytes
    expect: int
    valid: bool  # compared with the same request answered alone


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def probes(limits: dict, passages: dict[str, str]) -> list[Probe]:
    """The mix: a few distinct valid requests per kind (so each can be answered alone first) and one per hostile kind."""
    rng = random.Random(0)
    enc = lambda body: json.dumps(body).encode()  # noqa: E731
    stored_ids = sorted(passages)
    out: list[Probe] = []
    for n in range(8):
        docs = [_text(rng, 40 + 20 * k) for k in range(4)]
        out.append(Probe(f"inline-{n}", "/v1/rerank", enc({"query": _text(rng, 6), "documents": docs}), 200, True))
        out.append(Probe(f"tei-{n}", "/rerank", enc({"query": _text(rng, 5), "texts": docs[:3]}), 200, True))
        if stored_ids:
            words = passages[stored_ids[n * 3 % len(stored_ids)]].split()[:5]
            out.append(Probe(f"bm25-{n}", "/v1/rerank", enc({"query": " ".join(words), "top_k": 5}), 200, True))
            out.append(Probe(f"ids-{n}", "/v1/rerank", enc({"query": _text(rng, 4), "documents": [{"id": i} for i in stored_ids[n : n + 4]]}), 200, True))
    room = limits["max_body_bytes"] - 200
    out.append(Probe("query-at-body-limit", "/v1/rerank", enc({"query": ("river " * room)[:room], "documents": ["a river valley"]}), 200, True))
    out.append(Probe("documents-at-limit", "/v1/rerank", enc({"query": "river", "documents": [f"{WORDS[n % len(WORDS)]} {n}" for n in range(limits["max_documents"])]}), 200, True))
    out += [
        Probe("body-past-limit", "/v1/rerank", enc({"query": "river", "documents": ["river " * (limits["max_body_bytes"] // 6 + 10)]}), 413, False),
        Probe("documents-past-limit", "/v1/rerank", enc({"query": "river", "documents": ["a"] * (limits["max_documents"] + 1)}), 413, False),
        Probe("top_k-past-limit", "/v1/rerank", enc({"query": "river", "top_k": limits["max_documents"] + 1}), 413, False),
        Probe("document-chars-past-limit", "/v1/rerank", enc({"query": "river", "documents": ["r" * (limits["max_document_chars"] + 1)]}), 413, False),
        Probe("tokens-past-limit", "/v1/rerank", enc({"query": "river", "documents": [_text(rng, 3000) for _ in range(limits["max_passage_tokens"] // 1500)]}), 413, False),
        Probe("misspelt-field", "/v1/rerank", enc({"query": "river", "documents": ["a b"], "topn": 1}), 422, False),
        Probe("wrong-type", "/v1/rerank", enc({"query": "river", "documents": ["a b"], "top_k": True}), 422, False),
        Probe("malformed-json", "/v1/rerank", b'{"query": "river", "documents": [', 400, False),
    ]
    if stored_ids:
        out.append(Probe("same-id-twice", "/v1/rerank", enc({"query": "river", "documents": [{"id": stored_ids[0]}] * 2}), 422, False))
    return out


def heavy_probe(host: str, port: int, limits: dict) -> tuple[Probe, object]:
    """Documents just under the passage-token limit (the most a valid request may cost), and its answer alone:
    a word is about a token, and the overlap of windows makes each scored more than once, so the words
    start at the limit and shrink by a tenth until the server takes them."""
    words = limits["max_passage_tokens"]
    while True:
        words = int(words * 0.9)
        probe = Probe("tokens-at-limit", "/v1/rerank", json.dumps({"query": "river valley", "documents": [_text(random.Random(1), words // 8) for _ in range(8)]}).encode(), 200, True)
        status, body, _ = send(host, port, probe)
        if status != 413:
            return probe, body


def send(host: str, port: int, probe: Probe, timeout: float = 600) -> tuple[int, object, float]:
    """(status, JSON body, ms); status 0 for a connection the server dropped."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", probe.path, body=probe.body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        status, raw = r.status, r.read()
        return status, json.loads(raw), (time.perf_counter() - started) * 1e3
    except (OSError, http.client.HTTPException, json.JSONDecodeError) as e:
        return 0, repr(e), (time.perf_counter() - started) * 1e3
    finally:
        conn.close()


def hang_up(host: str, port: int, probe: Probe) -> None:
    """Send a request and disconnect before the answer: the server should drop its work, not fail."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"POST {probe.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(probe.body)}\r\n\r\n".encode() + probe.body)
        time.sleep(0.05)


def same(a: object, b: object, path: str) -> bool:
    """Two answers to one request agree: same order of documents, scores within 1e-4."""
    rows_a, rows_b = (a, b) if path == "/rerank" else (a["results"], b["results"])
    key = "score" if path == "/rerank" else "relevance_score"
    return [r["index"] for r in rows_a] == [r["index"] for r in rows_b] and bool(np.allclose([r[key] for r in rows_a], [r[key] for r in rows_b], atol=1e-4))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hostile_load(host: str, port: int, pid: int, clients: int, seconds: float, passages: dict[str, str], heavy: bool = True) -> dict:
    """Run the mix against a running server (process `pid`, for its RSS; `passages`: some of its store's
    ids and texts, for the BM25 and by-id kinds); returns the tallies and verdicts."""
    limits = json.loads(urllib_get(host, port, "/ready"))["limits"]
    idle = rss_mb(pid)
    mix = probes(limits, passages)
    alone = {p.name: send(host, port, p)[1] for p in mix if p.valid}
    expensive = []
    if heavy:
        probe, alone[probe.name] = heavy_probe(host, port, limits)
        expensive.append(probe)
    tallies: dict[str, Tally] = {p.name.rsplit("-", 1)[0] if p.name[-1].isdigit() else p.name: Tally() for p in mix + expensive}
    tallies["hang-up"] = Tally()
    problems: list[str] = []
    rss = [rss_mb(pid)]
    lock, stop = threading.Lock(), time.monotonic() + seconds

    def record(p: Probe, status: int, body: object, ms: float) -> None:
        kind = p.name.rsplit("-", 1)[0] if p.name[-1].isdigit() else p.name
        with lock:
            t = tallies[kind]
            t.statuses[status] = t.statuses.get(status, 0) + 1
            t.ms.append(ms)
            if status != p.expect:
                problems.append(f"{p.name}: {status} (expected {p.expect}): {str(body)[:200]}")
            elif p.valid and not same(body, alone[p.name], p.path):
                problems.append(f"{p.name}: differs from the same request sent alone")
            elif status != 200 and (not isinstance(body, dict) or set(body) != {"error"} or "\n" in body["error"]):
                problems.append(f"{p.name}: not a one-line JSON error: {str(body)[:200]}")

    def client(n: int) -> None:
        rng = random.Random(100 + n)
        for p in expensive if n == 0 else []:  # the costliest valid request, once: it holds the engine for seconds
            record(p, *send(host, port, p))
        while time.monotonic() < stop:
            if rng.random() < 0.05:
                hang_up(host, port, rng.choice([p for p in mix if p.valid]))
                with lock:
                    tallies["hang-up"].statuses[0] = tallies["hang-up"].statuses.get(0, 0) + 1
                continue
            p = rng.choice(mix)
            record(p, *send(host, port, p))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append(rss_mb(pid))
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    rss.append(rss_mb(pid))
    counts = [line for line in urllib_get(host, port, "/metrics").splitlines() if line.startswith("dtx_requests_total")]
    server_5xx, server_499 = (sum(int(line.split()[-1]) for line in counts if f'status="{s}' in line) for s in ("5", "499"))
    return {
        "clients": clients, "seconds": seconds, "elapsed_s": round(elapsed, 1), "limits": limits,
        "kinds": {k: {"statuses": t.statuses, "p50_ms": _pct(t.ms, 50), "p99_ms": _pct(t.ms, 99)} for k, t in tallies.items()},
        "requests": sum(sum(t.statuses.values()) for t in tallies.values()),
        "valid": sum(sum(t.statuses.values()) for k, t in tallies.items() if any(p.valid and p.name.startswith(k) for p in mix + expensive)),
        "server_5xx": server_5xx, "server_499": server_499, "problems": problems,
        "rss_mb": {"idle": round(idle), "start": round(rss[0]), "peak": round(max(rss)), "end": round(rss[-1])},
    }  # fmt: skip


def _pct(ms: list[float], q: int) -> float | None:
    return round(float(np.percentile(ms, q)), 1) if ms else None


def urllib_get(host: str, port: int, path: str) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def print_table(r: dict) -> None:
    print(f"{'kind':28s} {'statuses':28s} {'p50 ms':>9s} {'p99 ms':>9s}")
    for kind, k in r["kinds"].items():
        statuses = " ".join(f"{s}x{n}" for s, n in sorted(k["statuses"].items()))
        print(f"{kind:28s} {statuses:28s} {k['p50_ms'] or '':>9} {k['p99_ms'] or '':>9}")
    print(f"{r['requests']} requests ({r['valid']} valid) from {r['clients']} clients in {r['elapsed_s']} s; "
          f"server 5xx: {r['server_5xx']}; work dropped for clients that hung up (499): {r['server_499']}; problems: {len(r['problems'])}; "
          f"server RSS MB idle {r['rss_mb']['idle']}, after the requests sent alone {r['rss_mb']['start']}, peak {r['rss_mb']['peak']}, end {r['rss_mb']['end']}")  # fmt: skip
    for p in r["problems"][:10]:
        print("  " + p)


def passages(store: str, n: int = 40) -> dict[str, str]:
    """The first `n` passages of the store (by id): their ids and texts."""
    from dtx.store.passage_store import PassageStore

    st = PassageStore.open(store)
    return st.fetch(sorted(st.ids())[:n]).texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", nargs="?", help="The store to serve (or --engine alone: inline documents only).")
    ap.add_argument("--engine")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--threads", type=int, help="The server's ONNX Runtime threads.")
    ap.add_argument("--json", help="Also write the result as JSON.")
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "dtx.cli", "serve", *([a.store] if a.store else []), *(["--engine", a.engine] if a.engine else []), "--host", "127.0.0.1", "--port", str(port), *(["--threads", str(a.threads)] if a.threads else [])]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        for _ in range(600):
            try:
                urllib_get("127.0.0.1", port, "/health")
                break
            except OSError:
                if server.poll() is not None:
                    print(server.stdout.read(), file=sys.stderr)
                    return 1
                time.sleep(0.2)
        r = hostile_load("127.0.0.1", port, server.pid, a.clients, a.seconds, passages(a.store) if a.store else {})
    finally:
        server.send_signal(signal.SIGTERM)
        r_exit = server.wait(timeout=120)
    r["server_exit"] = r_exit
    print_table(r)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0 if not r["problems"] and not r["server_5xx"] and r_exit == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
