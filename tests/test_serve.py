"""`dtx serve` over real HTTP on loopback: a server process per fixture, requests from stdlib clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="dtx serve needs the [serve] extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="dtx serve needs the [serve] extra (fastapi, uvicorn)")

from dtx.query import QueryPipeline  # noqa: E402
from dtx.store.indexer import index_corpus  # noqa: E402
from test_store import write_corpus  # noqa: E402

ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtx.cli", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # Ray's replicas on a loaded 2-core machine took over 120 s to come up
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        try:
            if get(url + "/health")[0] == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not come up")


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.read().decode()


def post(url: str, body) -> tuple[int, object]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post_concurrently(url: str, bodies: list) -> list[tuple[int, object]]:
    """Every body POSTed at once, one client thread each; (status, response) in the bodies' order."""
    answers: list = [None] * len(bodies)

    def send(n: int) -> None:
        answers[n] = post(url, bodies[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def assert_same_rankings(got: list[tuple[int, object]], expected: list[dict], key: str) -> None:
    """Each response is 200 and ranks as `expected` (the same request answered alone), scores within 1e-4."""
    for n, (status, body) in enumerate(got):
        assert status == 200, body
        assert [r[key] for r in body["results"]] == [r[key] for r in expected[n]["results"]], n
        assert np.allclose([r["relevance_score"] for r in body["results"]], [r["relevance_score"] for r in expected[n]["results"]], atol=1e-4), n


@pytest.fixture(scope="module")
def served(engine, tmp_path_factory):
    """A store of 40 passages and a server over it (micro-batches of up to 128 pairs wait up to 50 ms for company)."""
    _, engine_dir = engine()
    root = tmp_path_factory.mktemp("serve")
    rows = write_corpus(root / "corpus.jsonl", 40, seed=3)
    index_corpus(root / "corpus.jsonl", engine_dir, root / "store", dtype="fp16", batch=8, chunk=16, progress=False)
    proc, url = start_server(str(root / "store"), "--max-batch-pairs", "128", "--max-wait-ms", "50", "--threads", "1")
    yield url, root / "store", engine_dir, {r["id"]: r["text"] for r in rows}
    assert stop_server(proc) == 0


def _question(texts: dict[str, str], pid: str) -> str:
    return " ".join(texts[pid].split()[:4])


def test_rerank_by_id_equals_the_pipeline(served):
    url, store, engine_dir, texts = served
    ids = sorted(texts)[:6]
    q = _question(texts, ids[2])
    status, body = post(url + "/v1/rerank", {"query": q, "documents": [{"id": i} for i in ids], "top_n": 4, "return_documents": True})
    assert status == 200, body
    with QueryPipeline.open(store) as pipe:
        direct = pipe.rerank(q, ids=ids)
    assert [r["id"] for r in body["results"]] == [c.id for c in direct.candidates][:4]
    assert np.allclose([r["relevance_score"] for r in body["results"]], [c.score for c in direct.candidates][:4], atol=1e-4)
    assert [r["index"] for r in body["results"]] == [ids.index(c.id) for c in direct.candidates][:4]
    assert all(r["document"]["text"] == texts[r["id"]] for r in body["results"])
    assert body["usage"]["documents"] == 6 and body["usage"]["pairs"] >= 6 and body["usage"]["query_truncated"] is False


def test_inline_documents_equal_on_the_fly_encoding(served):
    url, store, _, texts = served
    ids = sorted(texts)[6:11]
    q = _question(texts, ids[0])
    status, body = post(url + "/v1/rerank", {"query": q, "documents": [texts[i] for i in ids[:2]] + [{"text": texts[i]} for i in ids[2:]]})
    assert status == 200, body
    with QueryPipeline.open(store) as pipe:
        direct = pipe.rerank(q, ids=ids, on_the_fly=True)  # the same windows, encoded now
    assert [ids[r["index"]] for r in body["results"]] == [c.id for c in direct.candidates]
    assert np.allclose([r["relevance_score"] for r in body["results"]], [c.score for c in direct.candidates], atol=1e-4)
    assert all("id" not in r for r in body["results"])  # inline documents have no store id


def test_bm25_answers_carry_offsets_into_their_passage(served):
    url, _, _, texts = served
    pid = sorted(texts)[12]
    status, body = post(url + "/v1/answer", {"question": _question(texts, pid), "top_k": 5})
    assert status == 200, body
    assert 1 <= len(body["results"]) <= 5 and body["usage"]["documents"] <= 5
    for r in body["results"]:
        assert r["id"] in texts and r["index"] < 5
        if r["answer"] is not None:
            assert texts[r["id"]][r["start"] : r["end"]] == r["answer"]
    assert [r["score"] for r in body["results"]] == sorted((r["score"] for r in body["results"]), reverse=True)
    # the reader's answer: the best row where it passes the threshold (an uncalibrated engine's is 0), else null
    top = body["results"][0]
    assert body["no_answer_threshold"] == 0.0
    assert body["answer"] == (top if top["answer"] is not None and top["score"] > 0 else None)
    status, body = post(url + "/v1/rerank", {"query": _question(texts, pid), "top_k": 3})
    assert status == 200 and len(body["results"]) <= 3 and all("id" in r for r in body["results"])


def test_tei_rerank_route(served):
    url, _, _, texts = served
    docs = [texts[i] for i in sorted(texts)[:3]]
    status, body = post(url + "/rerank", {"query": docs[1][:30], "texts": docs})
    assert status == 200 and sorted(r["index"] for r in body) == [0, 1, 2]
    assert [r["score"] for r in body] == sorted((r["score"] for r in body), reverse=True)


@pytest.mark.parametrize(
    "path,body,status,needle",
    [
        ("/v1/rerank", b'{"query": "x", "documents": [', 400, "malformed JSON"),
        ("/v1/rerank", {"documents": ["a b c"]}, 422, "query"),
        ("/v1/rerank", {"query": "", "documents": ["a b c"]}, 422, "query"),
        ("/v1/rerank", {"query": "river", "documents": "a b c"}, 422, "documents"),
        ("/v1/rerank", {"query": "river", "documents": ["a b c"], "top_n": -1}, 422, "top_n"),
        ("/v1/rerank", {"query": "river", "documents": [{"id": "no-such-passage"}]}, 404, "no-such-passage"),
        ("/v1/rerank", {"query": "river", "documents": []}, 400, "documents is empty"),
        ("/v1/rerank", {"query": "river", "documents": [{"text": "  "}]}, 400, "empty"),
        ("/v1/answer", {"question": "river", "top_k": 0}, 422, "top_k"),
        ("/rerank", {"query": "river", "texts": []}, 422, "texts"),
    ],
)
def test_bad_requests_are_one_line_4xx_and_the_server_keeps_serving(served, path, body, status, needle):
    url = served[0]
    got, answer = post(url + path, body)
    assert got == status, answer
    assert set(answer) == {"error"} and needle in answer["error"] and "\n" not in answer["error"]
    assert get(url + "/health")[0] == 200


def test_a_200000_character_query_is_truncated_and_said_so(served):
    url, _, _, texts = served
    status, body = post(url + "/v1/rerank", {"query": "river " * 40_000, "documents": [texts[sorted(texts)[0]]]})
    assert status == 200 and body["usage"]["query_truncated"] is True and body["usage"]["query_tokens"] > 0


def test_32_concurrent_clients_get_their_own_results(served):
    """Each answer equals the same request sent alone; the batcher merged requests (fewer batches than requests)."""
    url, _, _, texts = served
    ids = sorted(texts)
    requests = [{"query": _question(texts, ids[n % len(ids)]), "documents": [{"id": i} for i in ids[n % 7 : n % 7 + 3 + n % 4]]} for n in range(32)]
    alone = [post(url + "/v1/rerank", r)[1] for r in requests]
    batches_before = _metric(url, 'dtx_batch_pairs_count{kind="cross"}')
    together = post_concurrently(url + "/v1/rerank", requests)
    assert_same_rankings(together, alone, "index")
    batches = _metric(url, 'dtx_batch_pairs_count{kind="cross"}') - batches_before
    assert 1 <= batches < len(requests), batches


def _metric(url: str, name: str) -> float:
    for line in get(url + "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_ready_and_metrics(served):
    url = served[0]
    ready = json.loads(get(url + "/ready")[1])
    assert ready["ready"] is True and ready["batching"] == {"max_pairs": 128, "max_wait_ms": 50.0}
    text = get(url + "/metrics")[1]
    for stage in ("fetch", "input", "cross", "request"):
        assert f'dtx_stage_latency_ms_count{{stage="{stage}"}}' in text, stage
    assert 'dtx_requests_total{endpoint="/v1/rerank",status="200"}' in text and "dtx_errors_total" in text


def test_inline_only_server_and_sigterm_mid_request(engine, served):
    """No store: inline documents only; SIGTERM while a request is in flight: it is answered, and exit 0."""
    _, engine_dir = engine()
    texts = served[3]
    proc, url = start_server("--engine", str(engine_dir), "--max-batch-pairs", "128", "--max-wait-ms", "200")
    status, body = post(url + "/v1/rerank", {"query": "river", "documents": [{"id": "doc-1"}]})
    assert status == 400 and "no store" in body["error"]
    assert post(url + "/v1/answer", {"question": "river"})[0] == 400
    result: dict = {}
    sender = threading.Thread(target=lambda: result.update(r=post(url + "/v1/rerank", {"query": "river", "documents": list(texts.values())[:4]})))
    sender.start()
    time.sleep(0.05)  # inside the batcher's 200 ms wait: the request is in flight
    assert stop_server(proc) == 0
    sender.join()
    assert result["r"][0] == 200 and len(result["r"][1]["results"]) == 4


def test_store_of_another_engine_is_refused_before_listening(served, exported, tmp_path):
    from dtx.engines.build import BuildOptions, build_engine

    _, store, _, _ = served
    _, other_export = exported("bert", 3, 2)
    build_engine(other_export, tmp_path / "other", BuildOptions(), progress=False)
    proc = subprocess.run([sys.executable, "-m", "dtx.cli", "serve", str(store), "--engine", str(tmp_path / "other"), "--port", str(_free_port())],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    lines = proc.stdout.strip().splitlines() + proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and "serving" not in proc.stdout


def _chromium() -> str | None:
    import shutil

    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None)


def test_page_answers_a_question_in_headless_chromium(served, tmp_path):
    """The page at / asks /v1/answer and shows each passage with its answer highlighted, scores and timings."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the page test needs playwright (the [test] extra)")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium on this machine (scripts/setup.sh installs Debian's chromium)")
    url, _, _, texts = served
    pid = sorted(texts)[12]
    question = _question(texts, pid)
    status, expected = post(url + "/v1/answer", {"question": question, "top_k": 5, "return_documents": True})
    assert status == 200 and expected["results"], expected
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=flags)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(url + "/")
        sync_api.expect(page.locator("#about")).to_contain_text("QA reader")
        page.fill("#question", question)
        page.fill("#top_k", "5")
        page.click("#go")
        sync_api.expect(page.locator("#status")).to_contain_text("passages, best first", timeout=60_000)
        items = page.locator("li.result")
        assert items.count() == len(expected["results"])
        for n, r in enumerate(expected["results"]):
            item = items.nth(n)
            assert item.locator(".passage").inner_text() == texts[r["id"]]
            assert f"passage {r['id']}" in item.locator(".head").inner_text()
            marks = item.locator("mark")
            if r["answer"]:
                assert marks.count() == 1 and marks.inner_text() == r["answer"]
            else:
                assert marks.count() == 0 and "no answer" in item.inner_text()
        assert "cross" in page.locator("#timings").inner_text()
        page.fill("#question", "zzzz")  # a question no passage shares a word with: the server's one-line error
        page.click("#go")
        sync_api.expect(page.locator("#status")).to_have_class("error", timeout=60_000)
        assert "no stored passage" in page.locator("#status").inner_text() and items.count() == 0
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 1000


def test_ray_serve_replicas_answer_like_the_single_server(served):
    """`dtx serve --ray` on a local Ray instance, two replicas: the same answers as uvicorn's server,
    concurrent requests merged by @serve.batch (counted in pairs), SIGTERM exits 0."""
    pytest.importorskip("ray.serve", reason="dtx serve --ray needs the [ray] extra (ray[serve])")
    url, store, _, texts = served
    ids = sorted(texts)
    requests = [{"query": _question(texts, ids[n]), "documents": [{"id": i} for i in ids[n : n + 4]]} for n in range(12)]
    expected = [post(url + "/v1/rerank", r)[1] for r in requests]
    proc, ray_url = start_server(str(store), "--ray", "--replicas", "2", "--max-batch-pairs", "128", "--max-wait-ms", "200", "--threads", "1")
    try:
        ready = json.loads(get(ray_url + "/ready")[1])
        assert ready["task"] == "qa" and ready["batching"] == {"max_pairs": 128, "max_wait_ms": 200.0, "per": "replica"}
        together = post_concurrently(ray_url + "/v1/rerank", requests)
        assert_same_rankings(together, expected, "id")
        assert max(body["usage"]["batch_requests"] for _, body in together) > 1  # 12 requests, 2 replicas: some shared a call
        assert all(body["usage"]["batch_pairs"] <= 128 for _, body in together)
        status, body = post(ray_url + "/v1/rerank", {"query": "river", "documents": [{"id": "no-such-passage"}]})
        assert status == 404 and "no-such-passage" in body["error"]
        assert "Ask the passages" in get(ray_url + "/")[1]
    finally:
        assert stop_server(proc) == 0


def test_cpu_default_runs_each_request_in_its_own_call(engine, served):
    """Unflagged on a CPU engine: one request per cross call (merging was measured slower there), said by /ready."""
    from dtx.serve.batcher import DEFAULT_BATCHING

    _, engine_dir = engine()
    texts = list(served[3].values())
    proc, url = start_server("--engine", str(engine_dir))
    try:
        pairs, wait = DEFAULT_BATCHING["cpu"]
        assert json.loads(get(url + "/ready")[1])["batching"] == {"max_pairs": pairs, "max_wait_ms": wait}
        bodies = post_concurrently(url + "/v1/rerank", [{"query": texts[n][:40], "documents": texts[:3]} for n in range(6)])
        assert all(status == 200 and body["usage"]["batch_requests"] == 1 for status, body in bodies)
    finally:
        assert stop_server(proc) == 0


def test_a_port_in_use_is_one_line_before_anything_loads(served):
    """The address is checked first: uvicorn would log and exit 3, Ray's proxy would raise a traceback."""
    url, store, _, _ = served
    port = url.rsplit(":", 1)[1]  # the module's server holds it
    for extra in ([], ["--ray"]):
        proc = subprocess.run([sys.executable, "-m", "dtx.cli", "serve", str(store), "--port", port, *extra],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], proc.stdout + proc.stderr
