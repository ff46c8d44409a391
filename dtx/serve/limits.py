"""What one request may cost, bounded before the work it would cost.

A 5.6 MB document once grew the server to 19.5 GB (every window of it encoded in one call) and a
5.6 MB query took 102 s to tokenize before it was cut to the question window. So each bound is
checked before the work it bounds, and a request past one is a 413 naming the limit and the fix:

- the body's bytes, from Content-Length and again while it arrives, before any JSON is parsed
  (`BodyLimit`, an ASGI middleware);
- the documents (or BM25 candidates, `top_k`) per request, and each document's characters, before
  anything is tokenized;
- the passage tokens scored (every window's tokens, inline or stored), after tokenizing or fetching
  and before the input and cross components run: the cost of a request is its windows' tokens.

A query is cut rather than refused: the model reads only its first `question_budget` tokens, so it
is cut to a character budget that holds them before it is tokenized, and the response says
`query_truncated`. A document is refused, not cut: every window of it is scored, and a cut would
silently score another text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from dtx.errors import DtxError
from dtx.model.segments import PairSegmenter

# A refused body is still read (and dropped) up to this many bytes before the 413 is sent: a client
# that writes its whole body before reading, as most do, would otherwise meet a closed connection
# (a broken pipe) instead of the answer. Past it the connection is closed after the 413.
DRAIN_BYTES = 64 * 2**20

# Characters per token the character budgets allow: a generous bound on ordinary text (English
# averages 4-5 characters a token under WordPiece), so a text's first N tokens lie in its first
# 16 x N characters unless its tokens are unusually long.
CHARS_PER_TOKEN = 16


class TooLarge(DtxError):
    """A request past one of the server's limits (413): the message names the limit and what to send instead."""


@dataclass(frozen=True)
class Limits:
    """The bounds of one request, reported by /ready. The character budgets follow from the token ones."""

    question_budget: int  # the model's question window in tokens (the segmenter's): sets query_chars
    max_body_bytes: int = 2_000_000  # text-embeddings-inference's default --payload-limit
    max_documents: int = 1000  # documents sent, or BM25 candidates asked for (top_k)
    max_passage_tokens: int = 32_768  # tokens of the windows scored: 64 windows of 512 tokens

    @classmethod
    def for_model(cls, segmenter: PairSegmenter) -> "Limits":
        return cls(question_budget=segmenter.question_budget)

    @property
    def max_document_chars(self) -> int:
        """A document longer than this cannot fit `max_passage_tokens` at `CHARS_PER_TOKEN`: refused untokenized."""
        return CHARS_PER_TOKEN * self.max_passage_tokens

    @property
    def query_chars(self) -> int:
        """Where a query is cut before tokenizing: past it lie only tokens the question window drops."""
        return CHARS_PER_TOKEN * self.question_budget

    def as_dict(self) -> dict[str, int]:
        out = asdict(self)
        del out["question_budget"]
        return {**out, "max_document_chars": self.max_document_chars, "query_chars": self.query_chars}

    def check_documents(self, count: int, texts: dict[int, str]) -> None:
        """`count` documents (or BM25 candidates), `texts` those sent inline by position: within the limits, or TooLarge."""
        if count > self.max_documents:
            raise TooLarge(f"{count:,} documents (or top_k) in one request; at most {self.max_documents:,}: split the request")
        for n, text in texts.items():
            if len(text) > self.max_document_chars:
                raise TooLarge(f"document {n} has {len(text):,} characters; at most {self.max_document_chars:,} per document: split it into passages")

    def check_tokens(self, tokens: int) -> None:
        """The passage tokens a request would score: within `max_passage_tokens`, or TooLarge."""
        if tokens > self.max_passage_tokens:
            raise TooLarge(f"the documents make {tokens:,} passage tokens to score; at most {self.max_passage_tokens:,} per request: send fewer or shorter documents, or a lower top_k")


def window_tokens(segmenter: PairSegmenter, texts: list[str]) -> int:
    """Tokens of every window `segmenter.passage` would cut `texts` into (overlaps counted in each window,
    specials included), from one batched tokenizer call: what scoring them costs, known before encoding."""
    seg = segmenter
    step, specials = seg.passage_budget - seg.doc_stride, len(seg.p_prefix) + len(seg.p_suffix)
    total = 0
    for ids in seg.tokenizer(texts, add_special_tokens=False)["input_ids"]:
        windows = 1 + max(0, -(-(len(ids) - seg.passage_budget) // step))
        total += (windows - 1) * seg.passage_budget + len(ids) - (windows - 1) * step + windows * specials
    return total


class BodyLimit:
    """ASGI middleware: a request body past `max_bytes` is answered 413 before the app reads or parses it,
    whether Content-Length says so or the bytes show it as they arrive (chunked, or a lying header).

    The body is read here, bounded, and replayed to the app; later `receive` calls go to the server's
    own, so the app still hears the client disconnect. A refused body is drained (up to DRAIN_BYTES,
    nothing kept) so that its client reads the 413.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(receive, send, f"{int(declared):,} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(receive, send, f"over {self.max_bytes:,} bytes", drained=size if more else None)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, receive, send, size: str, drained: int | None = 0) -> None:
        """The 413, after reading the rest of the body (`drained`: bytes read so far; None: all of it)."""
        while drained is not None and drained <= DRAIN_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained = drained + len(message.get("body", b"")) if message.get("more_body", False) else None
        body = json.dumps({"error": f"request body of {size}; at most {self.max_bytes:,} bytes: send fewer or shorter documents, or split the request"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
