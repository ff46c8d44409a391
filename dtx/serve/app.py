"""The HTTP API: re-rank and answer over cached passages (or passages sent inline), batched.

    POST /v1/rerank  {query, documents?: [str | {text} | {id}], top_n?, top_k?, return_documents?}
                     -> {results: [{index, relevance_score, id?, document?}], usage}      (Cohere / Jina shape)
    POST /v1/answer  {question, documents?, top_k?} -> {answer, no_answer_threshold, results: [{id?, index, answer, score, start, end}], usage}
    POST /rerank     {query, texts} -> [{index, score}]                      (text-embeddings-inference clients)
    GET  /           a page: type a question, see the answers highlighted in their passages
    GET  /health, /ready, /metrics (Prometheus text), /docs (OpenAPI)

`relevance_score` is the head's own score, not a probability: for a QA reader the best span's
start+end logit minus the no-answer logit (the passage's span beats "no answer" where it is > 0; the
reader answers the question, `answer`, with the best row only where its score passes the threshold
calibrated at training, `no_answer_threshold`, else `answer` is null), for a pair classifier the
log-probability of the positive class. `{id}` documents are passages of the store, read from
their cached representations; text documents go through the input component now; no documents
means the store's BM25 top `top_k`. Every error is one line of JSON, `{"error": ...}`, its status
by whose fault it is (as text-embeddings-inference maps them): the client's mistakes are 4xx (400
unanswerable, 404 unknown id, 413 past a limit of limits.py, 422 a malformed field), the server's
own faults 5xx (a damaged store, a failing engine), each logged as one line; the server keeps
serving. Request bodies are validated strictly: a misspelt field or a value of the wrong JSON type
is a 422 naming it, never a default or a coercion. Work whose client has disconnected is dropped
at the next stage (before fetching, encoding, the cross call).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from dtx.errors import DtxError, first_line
from dtx.query.pipeline import Candidate, QueryPipeline, QueryResult
from dtx.serve.batcher import Batcher, MicroBatcher
from dtx.serve.limits import BodyLimit, Limits, TooLarge, window_tokens
from dtx.serve.metrics import Metrics
from dtx.store.passage_store import CachedWindows, MissingPassages, NothingToSearch, StoreError
from dtx.task import Task

PAGE = (resources.files("dtx.serve") / "page.html").read_text(encoding="utf-8")
INLINE = "\x00inline:"  # internal id prefix of documents sent as text (no store id can start with NUL)
log = logging.getLogger("dtx.serve")


class Strict(BaseModel):
    """A request body as typed: unknown fields and JSON values of another type are refused (`topn`,
    `top_k: true`), not ignored or coerced into a request the client did not send."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TextDocument(Strict):
    text: str


class StoredDocument(Strict):
    id: str = Field(min_length=1)


Document = str | TextDocument | StoredDocument
DOCUMENT_SHAPES = {"str", "TextDocument", "StoredDocument"}  # the union's members, as validation errors name them


class RerankRequest(Strict):
    query: str = Field(min_length=1)
    documents: list[Document] | None = None
    top_n: int | None = Field(default=None, ge=1)
    top_k: int = Field(default=20, ge=1, description="BM25 candidates when no documents are given (at most the server's max_documents)")
    return_documents: bool = False


class AnswerRequest(Strict):
    question: str = Field(min_length=1)
    documents: list[Document] | None = None
    top_k: int = Field(default=20, ge=1)
    return_documents: bool = False


class TEIRerankRequest(Strict):
    query: str = Field(min_length=1)
    texts: list[str] = Field(min_length=1)


BODIES: dict[str, type[Strict]] = {"/v1/rerank": RerankRequest, "/v1/answer": AnswerRequest, "/rerank": TEIRerankRequest}


class InvalidRequest(DtxError):
    """A well-typed request that cannot mean one thing (the same stored id twice): 422."""


class ClientGone(DtxError):
    """The client disconnected before its work was done: the work stops at the next stage."""


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
    """The pipeline behind the endpoints: admitting a request, preparing it, scoring a batch of them."""

    def __init__(self, pipe: QueryPipeline, metrics: Metrics, limits: Limits) -> None:
        self.pipe, self.metrics, self.limits = pipe, metrics, limits

    def admit(self, documents: list[Document] | None, top_k: int) -> None:
        """What can be refused before any work, in the event loop: too many documents or characters
        (TooLarge), a stored id named twice (InvalidRequest: its two results could not both be `index`ed)."""
        texts = {n: d if isinstance(d, str) else d.text for n, d in enumerate(documents or ()) if not isinstance(d, StoredDocument)}
        self.limits.check_documents(len(documents) if documents is not None else top_k, texts)
        first: dict[str, int] = {}
        for n, doc in enumerate(documents or ()):
            if isinstance(doc, StoredDocument) and first.setdefault(doc.id, n) != n:
                raise InvalidRequest(f"documents {first[doc.id]} and {n} both name stored passage {doc.id!r}; send each id once")

    def prepare(self, query: str, documents: list[Document] | None, top_k: int, alive: Callable[[], None]) -> Prepared:
        """Candidates for one request, in the batch worker; `alive()` raises ClientGone once the client has
        gone, and is asked before each stage (fetching, encoding, and at the end, before the cross call)."""
        alive()
        query, usage = self._question(query)
        if documents is None:
            prepared = self._retrieved(query, top_k, usage)
        else:
            prepared = self._sent(query, documents, usage, alive)
        alive()
        return prepared

    def _question(self, query: str) -> tuple[str, dict]:
        """The query cut to the characters the question window can hold, then counted in tokens (usage)."""
        seg, cut = self.pipe.segmenter, len(query) > self.limits.query_chars
        query = query[: self.limits.query_chars]
        n_tokens = len(seg.tokenizer(query, add_special_tokens=False)["input_ids"])
        return query, {"query_tokens": min(n_tokens, seg.question_budget), "query_truncated": cut or n_tokens > seg.question_budget}

    def _retrieved(self, query: str, top_k: int, usage: dict) -> Prepared:
        """No documents: the store's BM25 top `top_k`, fetched."""
        if self.pipe.store is None:
            raise DtxError("no documents given and this server has no store; send documents")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        hits = self.pipe.store.search(query, top_k)
        timings["retrieve"] = (time.perf_counter() - t) * 1e3
        if not hits:
            raise DtxError("no stored passage shares a word with the query; send documents instead")
        ids = [pid for pid, _ in hits]
        t = time.perf_counter()
        cached = self.pipe.store.fetch(ids)
        timings["fetch"] = (time.perf_counter() - t) * 1e3
        self.limits.check_tokens(int(cached.mask.sum()))
        usage.update(documents=len(ids), pairs=len(cached.ids))
        return Prepared(query, cached, dict(hits), {pid: n for n, pid in enumerate(ids)}, cached.texts, usage, timings)

    def _sent(self, query: str, documents: list[Document], usage: dict, alive: Callable[[], None]) -> Prepared:
        """The request's documents: stored ones fetched, inline ones counted in tokens, then encoded."""
        if not documents:
            raise DtxError("documents is empty; send at least one, or leave it out to search the store")
        index: dict[str, int] = {}
        stored, inline = [], []
        for n, doc in enumerate(documents):
            if isinstance(doc, StoredDocument):
                if self.pipe.store is None:
                    raise DtxError(f"document {n} names a stored passage ({doc.id!r}) but this server has no store; send its text")
                index[doc.id] = n
                stored.append(doc.id)
            else:
                pid = f"{INLINE}{n}"
                index[pid] = n
                inline.append((pid, doc if isinstance(doc, str) else doc.text))
        if any(not text.strip() for _, text in inline):
            raise DtxError("a document's text is empty; send words, or leave the document out")
        parts, timings, tokens = [], {}, 0
        if stored:
            t = time.perf_counter()
            parts.append(self.pipe.store.fetch(stored))
            timings["fetch"] = (time.perf_counter() - t) * 1e3
            tokens = int(parts[-1].mask.sum())
        texts = [text for _, text in inline]
        self.limits.check_tokens(tokens + (window_tokens(self.pipe.segmenter, texts) if inline else 0))
        if inline:
            alive()
            t = time.perf_counter()
            parts.append(self.pipe.inline(texts, [pid for pid, _ in inline]))
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


def _one_line(exc: RequestValidationError, path: str) -> tuple[int, str]:
    """A validation failure as (status, one line): malformed JSON is a 400, a wrong field a 422 naming it
    (an unknown field with the route's own fields, a malformed document with the shapes a document takes)."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON body: {first.get('msg', 'cannot parse')}"
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if len(loc) >= 3 and loc[0] == "documents" and loc[2] in DOCUMENT_SHAPES:
        return 422, f"documents.{loc[1]}: a document is a string, {{\"text\": string}} or {{\"id\": string}}, nothing else"
    where = ".".join(loc) or "body"
    if first.get("type") == "extra_forbidden" and path in BODIES and len(loc) == 1:
        fields = list(BODIES[path].model_fields)
        near = difflib.get_close_matches(loc[0], fields, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        return 422, f"unknown field {loc[0]!r}; {hint}{path} takes {', '.join(fields)}"
    return 422, f"{where}: {first.get('msg', 'invalid')}"


def micro_batching(max_pairs: int, max_wait_ms: float) -> Callable[[Service], Batcher]:
    """The in-process batcher for `create_app`: at most `max_pairs` pairs, `max_wait_ms` for company."""
    return lambda service: MicroBatcher(service.score, max_pairs, max_wait_ms, on_batch=service.observe_batch)


# Status of each failure, by whose fault it is: the first class an error is an instance of (subclasses first).
STATUS: dict[type[Exception], int] = {
    InvalidRequest: 422,
    TooLarge: 413,
    MissingPassages: 404,
    NothingToSearch: 400,
    ClientGone: 499,  # nginx's "client closed request": nobody reads it, /metrics counts it
    StoreError: 500,  # the store is damaged: the server's fault, not the request's
    DtxError: 400,
}


def create_app(pipe: QueryPipeline, make_batcher: Callable[[Service], Batcher], limits: Limits | None = None) -> FastAPI:
    """The API over `pipe`; `make_batcher(service)` builds what merges requests (`micro_batching` under
    uvicorn, the replica's `@serve.batch` under Ray Serve); `limits` default to the model's (limits.py)."""
    metrics = Metrics()
    limits = limits or Limits.for_model(pipe.segmenter)
    service = Service(pipe, metrics, limits)
    gate = Gate(service, make_batcher(service))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gate.batcher.start()
        gate.ready = True
        yield
        gate.ready = False
        await gate.batcher.stop()

    app = FastAPI(title="dtx", summary="Re-rank and answer over cached passage representations (decoupled transformer).", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    _answer_errors(app, metrics)
    _query_routes(app, gate)
    _status_routes(app, gate)
    return app


class Gate:
    """Where a request enters the batched work: admitted first, then run through the batcher, and dropped
    at the next stage once its client has gone."""

    def __init__(self, service: Service, batcher: Batcher) -> None:
        self.service, self.batcher, self.ready = service, batcher, False

    async def run(self, request: Request, query: str, documents: list[Document] | None, top_k: int) -> tuple[QueryResult, Prepared]:
        self.service.admit(documents, top_k)
        gone, holder = threading.Event(), {}

        def alive() -> None:
            if gone.is_set():
                raise ClientGone("the client disconnected; its work was dropped")

        def prepare() -> Prepared:
            holder["item"] = self.service.prepare(query, documents, top_k, alive)
            return holder["item"]

        work = asyncio.ensure_future(self.batcher.submit(prepare, len(documents) if documents else top_k))
        watch = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if not work.done():
            gone.set()
            work.cancel()
            alive()
        return work.result(), holder["item"]


def _answer_errors(app: FastAPI, metrics: Metrics) -> None:
    """Every answer counted in `metrics`; every failure one line of JSON with the status of whose fault it is."""

    @app.middleware("http")
    async def count(request: Request, call_next):
        """Counts every answer, 413s of BodyLimit included; a fault nothing else caught is a one-line 500."""
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as e:  # noqa: BLE001 - a bug or an engine failure: the client gets one line, the log one line
            response = _fault(e)
        metrics.request(request.url.path, response.status_code)
        metrics.observe("dtx_stage_latency_ms", "request", (time.perf_counter() - started) * 1e3)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        status, message = _one_line(exc, request.url.path)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(DtxError)
    async def refused(request: Request, exc: DtxError):
        status = next(code for kind, code in STATUS.items() if isinstance(exc, kind))
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=status)


def _rows(candidates: list[Candidate], item: Prepared, return_documents: bool, fields: Callable[[Candidate], dict]) -> list[dict]:
    """One result row per candidate: `fields(candidate)`, then its index in the request, its store id (not for
    documents sent as text) and, when asked, its text."""
    rows = []
    for c in candidates:
        row = {"index": item.index[c.id], **fields(c)}
        if not c.id.startswith(INLINE):
            row["id"] = c.id
        if return_documents:
            row["document"] = {"text": item.texts.get(c.id, "")}
        rows.append(row)
    return rows


def _query_routes(app: FastAPI, gate: Gate) -> None:
    """The three query routes: Cohere-shaped re-rank, QA answers, and text-embeddings-inference's re-rank."""
    pipe = gate.service.pipe

    @app.post("/v1/rerank")
    async def rerank(req: RerankRequest, request: Request) -> dict:
        """Documents (or the store's BM25 candidates) ordered by the cross-encoder's score, best first."""
        result, item = await gate.run(request, req.query, req.documents, req.top_k)
        rows = _rows(result.candidates[: req.top_n], item, req.return_documents, lambda c: {"relevance_score": c.score})
        return {"results": rows, "usage": item.usage, "timings_ms": result.timings_ms}

    @app.post("/v1/answer")
    async def answer(req: AnswerRequest, request: Request) -> dict:
        """QA: the best span of each passage (character offsets into it), best passage first."""
        if pipe.task != Task.QA:
            raise DtxError("this model is a pair classifier, not a QA reader; use /v1/rerank")
        result, item = await gate.run(request, req.question, req.documents, req.top_k)
        rows = _rows(result.candidates, item, req.return_documents, lambda c: {"answer": c.answer, "score": c.score, "start": c.start, "end": c.end})
        answered = pipe.answer_of(result) is not None  # the best row, where its score passes the calibrated threshold
        threshold = pipe.no_answer.threshold("retrieved", "decoupled")
        return {"answer": rows[0] if answered else None, "no_answer_threshold": threshold, "results": rows, "usage": item.usage, "timings_ms": result.timings_ms}

    @app.post("/rerank")
    async def tei_rerank(req: TEIRerankRequest, request: Request) -> list[dict]:
        """The text-embeddings-inference route: `[{index, score}]`, best first."""
        result, item = await gate.run(request, req.query, list(req.texts), len(req.texts))
        return [{"index": item.index[c.id], "score": c.score} for c in result.candidates]


def _status_routes(app: FastAPI, gate: Gate) -> None:
    """The page, liveness, readiness (with the limits and batching a client plans by) and Prometheus metrics."""
    pipe, service = gate.service.pipe, gate.service

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        """A question box: answers highlighted in their passages, with scores and stage timings."""
        return PAGE

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        store = pipe.store.uri if pipe.store is not None else None
        body = {"ready": gate.ready, "task": pipe.task, "store": store, "batching": gate.batcher.limits, "limits": service.limits.as_dict()}
        return JSONResponse(body, status_code=200 if gate.ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        return service.metrics.text()


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone: after the body, the server's `receive` says only http.disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.1)  # a server that repeats other messages is polled, not spun on


def _fault(exc: Exception) -> JSONResponse:
    """An exception nothing mapped (an engine failure, a bug): a one-line 500 and one log line, no traceback."""
    first = first_line(exc, 300) if str(exc).strip() else ""
    log.error("internal error: %s: %s", type(exc).__name__, first)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}: {first}); the server's log has the same line"}, status_code=500)


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
