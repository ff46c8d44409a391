"""`dtx serve` against hostile requests: limits (413), strict bodies (422), dropped work, failures by kind, load.

The servers are real processes on loopback, started with test_serve.py's helpers; the module's store
is test_serve.py's `served` fixture.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="dtx serve needs the [serve] extra (fastapi, uvicorn)")

from test_serve import ROOT, _free_port, _metric, get, post, served, start_server, stop_server  # noqa: E402, F401 - served: the module's fixture

sys.path.insert(0, str(ROOT / "scripts"))
from serve_hostile_load import hostile_load, print_table  # noqa: E402


@pytest.fixture(scope="module")
def limits(served) -> dict:
    return json.loads(get(served[0] + "/ready")[1])["limits"]


def test_ready_reports_the_limits(limits):
    assert limits["max_body_bytes"] == 2_000_000 and limits["max_documents"] == 1000
    assert limits["max_document_chars"] == 16 * limits["max_passage_tokens"] and 0 < limits["query_chars"] < 2_000


def _post_raw(url: str, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", path, body=iter(chunks), headers={"Content-Type": "application/json", **headers}, encode_chunked="Content-Length" not in headers)
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def test_a_body_past_the_limit_is_413_before_it_is_parsed(served, limits):
    """Refused from Content-Length, and from the bytes themselves when no length is declared (chunked)."""
    url = served[0]
    big = json.dumps({"query": "river", "documents": ["river " * (limits["max_body_bytes"] // 6)]}).encode()
    status, body = post(url + "/v1/rerank", big)
    assert status == 413 and set(body) == {"error"} and f"at most {limits['max_body_bytes']:,} bytes" in body["error"]
    status, body = _post_raw(url, "/v1/rerank", [big[i : i + 65536] for i in range(0, len(big), 65536)], {})
    assert status == 413 and "at most" in body["error"]
    status, body = _post_raw(url, "/v1/rerank", [b"{" * 10] * (limits["max_body_bytes"] // 10 + 1), {})  # never valid JSON: 413 is said first
    assert status == 413
    assert get(url + "/health")[0] == 200


def test_a_client_that_sends_a_whole_oversized_body_before_reading_gets_the_413(served, limits):
    """8 MB written before the answer is read (what urllib does): the server drains it, so no broken pipe."""
    status, body = post(served[0] + "/v1/rerank", json.dumps({"query": "river", "documents": ["river " * (4 * limits["max_body_bytes"] // 6)]}).encode())
    assert status == 413 and "at most" in body["error"]


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda lim: {"query": "river", "documents": ["a b"] * (lim["max_documents"] + 1)}, "documents (or top_k)"),
        (lambda lim: {"query": "river", "top_k": lim["max_documents"] + 1}, "documents (or top_k)"),
        (lambda lim: {"query": "river", "documents": ["a b", "r" * (lim["max_document_chars"] + 1)]}, "document 1 has"),
        (lambda lim: {"query": "river", "documents": ["river valley " * 4000] * 8}, "passage tokens"),
    ],
)
def test_requests_past_a_limit_are_413_naming_it(served, limits, make, needle):
    url = served[0]
    started = time.perf_counter()
    status, body = post(url + "/v1/rerank", make(limits))
    assert status == 413 and set(body) == {"error"} and needle in body["error"] and "at most" in body["error"] and "\n" not in body["error"], body
    assert time.perf_counter() - started < 30  # refused before the engine runs
    assert get(url + "/health")[0] == 200


def test_a_request_at_the_document_limit_is_answered(served, limits):
    url = served[0]
    docs = [f"river {n}" for n in range(limits["max_documents"])]
    status, body = post(url + "/v1/rerank", {"query": "river", "documents": docs, "top_n": 3})
    assert status == 200 and len(body["results"]) == 3 and body["usage"]["documents"] == limits["max_documents"]


def test_a_huge_query_is_cut_by_characters_before_it_is_tokenized(engine):
    """The query reaches the tokenizer cut to query_chars (a 1.9 MB query was tokenized whole, for 102 s)."""
    from dtx.query import QueryPipeline
    from dtx.serve.app import Service
    from dtx.serve.limits import Limits
    from dtx.serve.metrics import Metrics

    _, engine_dir = engine()
    with QueryPipeline.open(None, engine_dir) as pipe:
        limits = Limits.for_model(pipe.segmenter)
        pipe.segmenter.tokenizer = tokenizer = Recording(pipe.segmenter.tokenizer)
        item = Service(pipe, Metrics(), limits).prepare("river " * 300_000, ["a river valley"], 20, alive=lambda: None)
    assert item.query == ("river " * 300_000)[: limits.query_chars] and item.usage["query_truncated"] is True
    assert max(tokenizer.lengths) <= limits.query_chars


class Recording:
    """A tokenizer that records the characters of every text it is given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.lengths = tokenizer, []

    def __call__(self, text, **kw):
        self.lengths += [len(text)] if isinstance(text, str) else [len(t) for t in text]
        return self.tokenizer(text, **kw)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_window_tokens_counts_what_the_segmenter_cuts(engine):
    from dtx.query import QueryPipeline
    from dtx.serve.limits import window_tokens

    _, engine_dir = engine()
    with QueryPipeline.open(None, engine_dir) as pipe:
        seg = pipe.segmenter
        texts = ["river", "river valley " * 30, "a " * seg.passage_budget, "oxygen was discovered " * 400]
        assert window_tokens(seg, texts) == sum(len(w.input_ids) for t in texts for w in seg.passage(t))


def test_cpu_calls_are_cut_to_a_token_budget_with_the_same_answers(engine):
    """Many long windows: encoded and scored in calls of at most call_tokens tokens (memory bounded), same scores."""
    from dtx.query import QueryPipeline

    _, engine_dir = engine()
    texts = [("river valley oxygen " * 60) + str(n) for n in range(6)]
    with QueryPipeline.open(None, engine_dir) as pipe:
        ids = [f"d{n}" for n in range(6)]
        pipe.call_tokens = None
        whole = pipe.score_many(["river"], [pipe.inline(texts, ids)], [{}], {})[0]
        calls: list[int] = []
        cross = pipe.runner.cross
        pipe.runner.cross = lambda q, qm, p, pm: (calls.append(p.shape[0] * p.shape[1]), cross(q, qm, p, pm))[1]
        pipe.call_tokens = 256
        cut = pipe.score_many(["river"], [pipe.inline(texts, ids)], [{}], {})[0]
    assert len(calls) > 3 and max(calls) <= 256
    assert [c.id for c in cut.candidates] == [c.id for c in whole.candidates]
    assert np.allclose([c.score for c in cut.candidates], [c.score for c in whole.candidates], atol=1e-4)


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"query": "river", "documents": ["a b"], "top_k": True}, "top_k: Input should be a valid integer"),
        ({"query": "river", "documents": ["a b"], "top_n": "2"}, "top_n"),
        ({"query": "river", "documents": ["a b"], "return_documents": 1}, "return_documents"),
        ({"query": "river", "documents": ["a b"], "topn": 1}, "unknown field 'topn'; did you mean 'top_n'?"),
        ({"query": "river", "documents": [{"txt": "a b"}]}, "documents.0: a document is a string"),
        ({"query": "river", "documents": [{"text": "a b", "id": "doc-1"}]}, "documents.0: a document is a string"),
    ],
)
def test_bodies_are_validated_strictly(served, body, needle):
    """No coercion (true is not 1), no ignored field: a 422 naming it."""
    status, answer = post(served[0] + "/v1/rerank", body)
    assert status == 422 and set(answer) == {"error"} and needle in answer["error"] and "\n" not in answer["error"], answer


def test_the_same_stored_id_twice_is_422_naming_it(served):
    url, _, _, texts = served
    ids = sorted(texts)[:3]
    status, body = post(url + "/v1/rerank", {"query": "river", "documents": [{"id": ids[0]}, {"id": ids[1]}, {"id": ids[2]}, {"id": ids[1]}]})
    assert status == 422 and f"documents 1 and 3 both name stored passage {ids[1]!r}" in body["error"]


def test_work_of_a_client_that_hung_up_is_dropped(engine, served):
    """The request waits 1.5 s for company in the batcher; its client leaves after 0.3 s: no cross call runs for it."""
    _, engine_dir = engine()
    proc, url = start_server("--engine", str(engine_dir), "--max-batch-pairs", "128", "--max-wait-ms", "1500")
    try:
        texts = list(served[3].values())[:3]
        assert post(url + "/v1/rerank", {"query": "river", "documents": texts})[0] == 200
        crosses = _metric(url, 'dtx_stage_latency_ms_count{stage="cross"}')
        body = json.dumps({"query": "river", "documents": texts}).encode()
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(f"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.3)
        time.sleep(2.5)
        assert _metric(url, 'dtx_requests_total{endpoint="/v1/rerank",status="499"}') == 1
        assert _metric(url, 'dtx_stage_latency_ms_count{stage="cross"}') == crosses
    finally:
        assert stop_server(proc) == 0


def _copy_store(store: Path, to: Path) -> Path:
    shutil.copytree(store, to)
    return to


def test_a_store_without_its_data_file_is_refused_before_listening(served, tmp_path):
    store = _copy_store(served[1], tmp_path / "store")
    for f in (store / "data").iterdir():
        f.unlink()
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "dtx.cli", "serve", str(store), "--port", str(port)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and str(store) in lines[0], proc.stdout + proc.stderr


def test_a_store_damaged_while_serving_is_a_one_line_5xx(served, tmp_path):
    """The server's own fault is a 500 (the request was fine), logged as one line; the client's mistakes stay 4xx."""
    url, store, _, texts = served
    store = _copy_store(store, tmp_path / "store")
    proc, url = start_server(str(store))
    try:
        pid = sorted(texts)[0]
        assert post(url + "/v1/rerank", {"query": "river", "documents": [{"id": pid}]})[0] == 200
        for f in (store / "data").iterdir():
            f.unlink()
        status, body = post(url + "/v1/rerank", {"query": "river", "documents": [{"id": pid}]})
        assert status == 500 and set(body) == {"error"} and str(store) in body["error"] and "\n" not in body["error"], body
        assert post(url + "/v1/rerank", {"query": "river", "documents": ["a b"], "topn": 1})[0] == 422
    finally:
        stop_server(proc)
    log = proc.stdout.read()
    faults = [line for line in log.splitlines() if line.startswith("POST /v1/rerank: ")]
    assert "Traceback" not in log and len(faults) == 1 and str(store) in faults[0], log


def test_hostile_load_no_5xx_same_answers_bounded_memory(engine, served):
    """The short version of scripts/serve_hostile_load.py: 16 clients, 5 s, every kind of request."""
    _, store, _, texts = served
    proc, url = start_server(str(store), "--threads", "1")
    try:
        host, port = url.removeprefix("http://").split(":")
        r = hostile_load(host, int(port), proc.pid, clients=16, seconds=5, passages=texts, heavy=False)
    finally:
        assert stop_server(proc) == 0
    print_table(r)
    assert r["server_5xx"] == 0 and not r["problems"], r["problems"]
    assert r["valid"] > 16 and r["requests"] > r["valid"]
    assert r["rss_mb"]["peak"] < r["rss_mb"]["start"] + 500, r["rss_mb"]
