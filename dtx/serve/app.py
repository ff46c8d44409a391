"""The HTTP API: re-rank and answer over cached passages (or passages sent inline), batched.

    POST /v1/rerank  {query, documents?: [str | {text} | {id}], top_n?, top_k?, return_documents?}
                     -> {results: [{index, relevance_score, id?, document?}], usage}      (Cohere / Jina shape)
    POST /v1/answer  {question, documents?, top_k?} -> {results: [{id?, index, answer, score, start, end}], usage}
    POST /rerank     {query, texts} -> [{index, score}]                      (text-embeddings-inference clients)
    GET  /           a page: type a question, see the answers highlighted in their passages
    GET  /health, /ready, /metrics (Prometheus text), /docs (OpenAPI)

`relevance_score` is the head's own score, not a probability: for a QA reader the best span's
start+end logit minus the no-answer logit (> 0: the passage answers), for a pair classifier the
log-probability of the positive class. `{id}` documents are passages of the store, read from
their cached representations; text documents go through the input component now; no documents
means the store's BM25 top `top_k`. Every error is one line of JSON, `{"error": ...}`, with a 4xx
status for a bad request; the server keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from dtx.errors import DtxError
from dtx.query.pipeline import QueryPipeline, QueryResult
from dtx.serve.batcher import Batcher, MicroBatcher
from dtx.serve.metrics import Metrics
from dtx.store.passage_store import CachedWindows, MissingPassages

PAGE = (resources.files("dtx.serve") / "page.html").read_text(encoding="utf-8")
INLINE = "\x00inline:"  # internal id prefix of documents sent as text (no store id can start with NUL)


class TextDocument(BaseModel):
    text: str


class StoredDocument(BaseModel):
    id: str = Field(min_length=1)


Document = str | TextDocument | StoredDocument


class RerankRequest(BaseModel):
    query: str = Field(min_length=1)
    documents: list[Document] | None = None
    top_n: int | None = Field(default=None, ge=1)
    top_k: int = Field(default=20, ge=1, le=1000, description="BM25 candidates when no documents are given")
    return_documents: bool = False


class AnswerRequest(BaseModel):
    question: str = Field(min_length=1)
    documents: list[Document] | None = None
    top_k: int = Field(default=20, ge=1, le=1000)
    return_documents: bool = False


class TEIRerankRequest(BaseModel):
    query: str = Field(min_length=1)
    texts: list[str] = Field(min_length=1)


@dataclass
class Prepared:
    """One request ready for the cross component: its question, candidate windows and bookkeeping."""

    query: str
    cached: CachedWindows
    retrieval: dict[str, float]
    index: dict[str, int]  # internal passage id -> position in the request's documents (or BM25 rank)
    texts: dict[str, str]  # internal passage id -> text (for return_documents)
    usage: dict
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        return len(self.cached.ids)


class Service:
    """The pipeline behind the endpoints: preparing one request, scoring a batch of them."""

    def __init__(self, pipe: QueryPipeline, metrics: Metrics) -> None:
        self.pipe, self.metrics = pipe, metrics

    def prepare(self, query: str, documents: list[Document] | None, top_k: int) -> Prepared:
        seg, timings = self.pipe.segmenter, {}
        n_tokens = len(seg.tokenizer(query, add_special_tokens=False)["input_ids"])
        usage = {"query_tokens": min(n_tokens, seg.question_budget), "query_truncated": n_tokens > seg.question_budget}
        if documents is None:
            if self.pipe.store is None:
                raise DtxError("no documents given and this server has no store; send documents")
            t = time.perf_counter()
            hits = self.pipe.store.search(query, top_k)
            timings["retrieve"] = (time.perf_counter() - t) * 1e3
            if not hits:
                raise DtxError("no stored passage shares a word with the query; send documents instead")
            ids = [pid for pid, _ in hits]
            t = time.perf_counter()
            cached = self.pipe.store.fetch(ids)
            timings["fetch"] = (time.perf_counter() - t) * 1e3
            usage.update(documents=len(ids), pairs=len(cached.ids))
            return Prepared(query, cached, dict(hits), {pid: n for n, pid in enumerate(ids)}, cached.texts, usage, timings)
        if not documents:
            raise DtxError("documents is empty; send at least one, or leave it out to search the store")
        index: dict[str, int] = {}
        stored, inline = [], []
        for n, doc in enumerate(documents):
            if isinstance(doc, StoredDocument):
                if self.pipe.store is None:
                    raise DtxError(f"document {n} names a stored passage ({doc.id!r}) but this server has no store; send its text")
                index.setdefault(doc.id, n)
                stored.append(doc.id)
            else:
                pid = f"{INLINE}{n}"
                index[pid] = n
                inline.append((pid, doc if isinstance(doc, str) else doc.text))
        if any(not text.strip() for _, text in inline):
            raise DtxError("a document's text is empty; send words, or leave the document out")
        parts = []
        if stored:
            t = time.perf_counter()
            parts.append(self.pipe.store.fetch(list(dict.fromkeys(stored))))
            timings["fetch"] = (time.perf_counter() - t) * 1e3
        if inline:
            t = time.perf_counter()
            parts.append(self.pipe.inline([text for _, text in inline], [pid for pid, _ in inline]))
            timings["encode_documents"] = (time.perf_counter() - t) * 1e3
        cached = CachedWindows.concat(parts)
        usage.update(documents=len(documents), pairs=len(cached.ids))
        return Prepared(query, cached, {}, index, cached.texts, usage, timings)

    def observe_batch(self, pairs: int, ms: float) -> None:
        self.metrics.observe("dtx_batch_pairs", "cross", pairs)

    def score(self, items: list[Prepared]) -> list[QueryResult]:
        timings: dict[str, float] = {}
        results = self.pipe.score_many([i.query for i in items], [i.cached for i in items], [i.retrieval for i in items], timings)
        for stage, ms in timings.items():
            self.metrics.observe("dtx_stage_latency_ms", stage, ms)
        batch_pairs = sum(i.pairs for i in items)
        for item, result in zip(items, results):
            for stage, ms in item.timings.items():
                self.metrics.observe("dtx_stage_latency_ms", stage, ms)
            result.timings_ms = {**item.timings, **timings}
            item.usage.update(batch_requests=len(items), batch_pairs=batch_pairs)  # whom the cross call was shared with
        return results


def _one_line(exc: RequestValidationError) -> tuple[int, str]:
    """A validation failure as (status, one line): malformed JSON is a 400, a wrong field a 422."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON body: {first.get('msg', 'cannot parse')}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return 422, f"{where}: {first.get('msg', 'invalid')}"


def micro_batching(max_pairs: int, max_wait_ms: float) -> Callable[[Service], Batcher]:
    """The in-process batcher for `create_app`: at most `max_pairs` pairs, `max_wait_ms` for company."""
    return lambda service: MicroBatcher(service.score, max_pairs, max_wait_ms, on_batch=service.observe_batch)


def create_app(pipe: QueryPipeline, make_batcher: Callable[[Service], Batcher]) -> FastAPI:
    """The API over `pipe`; `make_batcher(service)` builds what merges requests (`micro_batching` under
    uvicorn, the replica's `@serve.batch` under Ray Serve)."""
    metrics = Metrics()
    service = Service(pipe, metrics)
    batcher = make_batcher(service)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(title="dtx", summary="Re-rank and answer over cached passage representations (decoupled transformer).", lifespan=lifespan)

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        metrics.request(request.url.path, response.status_code)
        metrics.observe("dtx_stage_latency_ms", "request", (time.perf_counter() - started) * 1e3)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        status, message = _one_line(exc)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(MissingPassages)
    async def missing(request: Request, exc: MissingPassages):
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(DtxError)
    async def refused(request: Request, exc: DtxError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def run(query: str, documents: list[Document] | None, top_k: int) -> tuple[QueryResult, Prepared]:
        holder: dict[str, Prepared] = {}

        def prepare() -> Prepared:
            holder["item"] = service.prepare(query, documents, top_k)
            return holder["item"]

        result = await batcher.submit(prepare, len(documents) if documents else top_k)
        return result, holder["item"]

    @app.post("/v1/rerank")
    async def rerank(req: RerankRequest) -> dict:
        """Documents (or the store's BM25 candidates) ordered by the cross-encoder's score, best first."""
        result, item = await run(req.query, req.documents, req.top_k)
        rows = []
        for c in result.candidates[: req.top_n]:
            row = {"index": item.index[c.id], "relevance_score": c.score}
            if not c.id.startswith(INLINE):
                row["id"] = c.id
            if req.return_documents:
                row["document"] = {"text": item.texts.get(c.id, "")}
            rows.append(row)
        return {"results": rows, "usage": item.usage, "timings_ms": result.timings_ms}

    @app.post("/v1/answer")
    async def answer(req: AnswerRequest) -> dict:
        """QA: the best span of each passage (character offsets into it), best passage first."""
        if pipe.task != "qa":
            raise DtxError("this model is a pair classifier, not a QA reader; use /v1/rerank")
        result, item = await run(req.question, req.documents, req.top_k)
        rows = []
        for c in result.candidates:
            row = {"index": item.index[c.id], "answer": c.answer, "score": c.score, "start": c.start, "end": c.end}
            if not c.id.startswith(INLINE):
                row["id"] = c.id
            if req.return_documents:
                row["document"] = {"text": item.texts.get(c.id, "")}
            rows.append(row)
        return {"results": rows, "usage": item.usage, "timings_ms": result.timings_ms}

    @app.post("/rerank")
    async def tei_rerank(req: TEIRerankRequest) -> list[dict]:
        """The text-embeddings-inference route: `[{index, score}]`, best first."""
        result, item = await run(req.query, list(req.texts), len(req.texts))
        return [{"index": item.index[c.id], "score": c.score} for c in result.candidates]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        """A question box: answers highlighted in their passages, with scores and stage timings."""
        return PAGE

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        body = {"ready": state["ready"], "task": pipe.task, "store": pipe.store.uri if pipe.store is not None else None, "batching": batcher.limits}
        return JSONResponse(body, status_code=200 if state["ready"] else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        return metrics.text()

    return app


def check_port(host: str, port: int) -> None:
    """Refuse an address another process listens on before anything is loaded or deployed (uvicorn and
    Ray's proxy would each fail later, with a log line or a traceback)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DtxError(f"--host {host} does not resolve ({e.strerror}); pass an address such as 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise DtxError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port, or stop what holds it") from None


def run_server(app: FastAPI, host: str, port: int) -> None:
    """uvicorn until SIGTERM/SIGINT: stop accepting, finish the requests in flight, return (exit status 0).

    uvicorn re-raises the signal after its graceful shutdown, so a service manager would read a
    clean stop as a kill (-15); a stop asked for is a success here.
    """
    import uvicorn

    class Server(uvicorn.Server):
        def capture_signals(self):
            server = super().capture_signals()

            class Quiet:  # uvicorn's own handlers, without the re-raise at the end
                def __enter__(inner):
                    server.__enter__()

                def __exit__(inner, *exc):
                    self._captured_signals.clear()
                    return server.__exit__(*exc)

            return Quiet()

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
