"""Query time: retrieve candidates, fetch their cached representations, run the two components.

    pipe = QueryPipeline.open("store/")              # the engine recorded in the store
    result = pipe.answer("who discovered oxygen?")   # QA: spans with scores
    result = pipe.rerank("query", ids=[...])         # any task: candidates by cross-encoder score
    result.timings_ms                                # retrieve, fetch, input, cross

Only the question goes through the input component; the candidates' input-component outputs
come from the store (workflow A/B of the paper). `on_the_fly=True` encodes the candidates with
the engine instead, which is what the store's equality check compares against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtx.engines import Engine
from dtx.errors import DtxError
from dtx.eval.metrics import positive_index
from dtx.model.decode import best_span
from dtx.model.segments import Batch, Segment
from dtx.store.passage_store import CachedWindows, PassageStore, StoreInfo
from dtx.task import Task


# Tokens (rows x padded width) per engine call on a CPU engine: a call's memory grows as rows x width^2
# (attention), so one request of many long windows in one call grew a server by gigabytes. Measured with
# the 2/4 4x MiniLM student, 447-token windows encoded and scored: 16 in one call peak at 1.1 GB RSS,
# 64 at 2.8 GB, 256 at 10 GB. Elsewhere calls are not cut (an accelerator's shapes are its profile's).
CPU_CALL_TOKENS = 8192


class NothingRetrieved(DtxError):
    """BM25 found no candidate for a query (no shared word)."""


@dataclass
class Candidate:
    id: str
    score: float  # cross-encoder score (QA: best span score minus no-answer score)
    retrieval_score: float | None = None
    answer: str | None = None  # QA: the span text; None when no-answer wins
    label: str | None = None  # pair tasks: the predicted class
    start: int | None = None  # QA: character offsets of the span in the passage text
    end: int | None = None


@dataclass
class QueryResult:
    query: str
    candidates: list[Candidate]
    timings_ms: dict[str, float] = field(default_factory=dict)


class QueryPipeline:
    """A store plus the engine that reads it (checked to come from the same export); without a store,
    the engine alone scores passages given inline (`inline`, `score_many`)."""

    def __init__(self, store: PassageStore | None, engine: Engine, label: str | None = None, length_buckets: int | None = None) -> None:
        self.store = store
        self.engine = engine
        # cross calls per scored set, by window length: 3 on a CPU engine (measured fastest of 1-3), 1
        # elsewhere (not measured: an accelerator's per-call cost and captured shapes may favour one call)
        self.length_buckets = length_buckets or (3 if engine.device == "cpu" else 1)
        self.call_tokens = CPU_CALL_TOKENS if engine.device == "cpu" else None
        self.segmenter = engine.segmenter
        self.task = engine.task
        self.labels = engine.export.labels
        if label is not None and self.task != Task.PAIR:
            raise DtxError(f"--label {label!r} chooses a class of a pair classifier; the model here is a QA reader (it answers, it has no labels): drop --label")
        self.positive = positive_index(self.labels, label) if self.task == Task.PAIR else None
        self.no_answer = engine.export.checkpoint.no_answer  # calibrated at training; uncalibrated reads 0

    @classmethod
    def open(cls, store_uri: str | Path | None, engine_dir: str | Path | None = None, threads: int | None = None, label: str | None = None) -> "QueryPipeline":
        from dtx.engines import open_engine

        if engine_dir is not None and not Path(engine_dir).is_dir():  # given, not found: say so (not "the store's engine is gone")
            what = "is not a directory" if Path(engine_dir).exists() else "does not exist"
            raise DtxError(f"engine {engine_dir} {what}; pass --engine with a directory `dtx build-engine` wrote")
        store = PassageStore.open(store_uri) if store_uri is not None else None
        engine_dir = engine_dir or (store.info.engine if store is not None else None)
        if not engine_dir or not Path(engine_dir).is_dir():
            if store is None:
                raise DtxError(f"engine {engine_dir} is not a directory; pass --engine ENGINE_DIR")
            raise DtxError(f"the engine that built {store_uri} ({engine_dir or 'unknown'}) is gone; pass --engine ENGINE_DIR built from the same export")
        engine = open_engine(engine_dir, threads=threads)
        if store is not None:
            store.require_model(StoreInfo.from_engine(engine, store.info.dtype))
        try:
            engine.runner  # built now: a backend that cannot load fails here, not on the first query
            return cls(store, engine, label)
        except BaseException:
            engine.close()
            raise

    @property
    def runner(self):
        return self.engine.runner

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "QueryPipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- stages ------------------------------------------------------------------------------
    def _candidates(self, query: str, k: int, ids: list[str] | None, timings: dict[str, float]) -> tuple[list[str], dict[str, float]]:
        t = time.perf_counter()
        if ids:
            hits = [(i, None) for i in dict.fromkeys(ids)]
        else:
            hits = self.store.search(query, k)
            if not hits:
                raise NothingRetrieved(f"no passage in {self.store.uri} shares a word with {query!r}; pass --ids to score chosen passages")
        timings["retrieve"] = (time.perf_counter() - t) * 1e3
        return [h[0] for h in hits], dict(hits)

    def _fetch(self, ids: list[str], on_the_fly: bool, timings: dict[str, float]) -> CachedWindows:
        t = time.perf_counter()
        cached = self.store.fetch(ids)
        if on_the_fly:  # the reference: the same windows encoded now by the engine
            seg = self.segmenter
            batch = seg.pad([Segment(list(tok), [seg.passage_type] * len(tok), []) for tok in cached.token_ids])
            cached.reps, cached.mask = self.runner.encode(batch), batch.attention_mask
        timings["fetch"] = (time.perf_counter() - t) * 1e3
        return cached

    def _questions(self, queries: list[str], timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Input component once over all questions of a batch."""
        t = time.perf_counter()
        q = self.segmenter.pad([self.segmenter.question(text) for text in queries])
        hidden = self.runner.encode(q)
        timings["input"] = (time.perf_counter() - t) * 1e3
        return hidden, q.attention_mask

    # -- public API ----------------------------------------------------------------------------
    def rerank(self, query: str, k: int = 20, ids: list[str] | None = None, on_the_fly: bool = False) -> QueryResult:
        """Candidates (BM25's top k, or `ids`) ordered by the cross-encoder score; a passage scores its best window."""
        return self.rerank_many([query], k, [ids] if ids else None, on_the_fly)[0]

    def answer(self, query: str, k: int = 20, ids: list[str] | None = None, on_the_fly: bool = False) -> QueryResult:
        """QA: the best span of each candidate passage, best first (a span only where it beats no-answer)."""
        return self.answer_many([query], k, [ids] if ids else None, on_the_fly)[0]

    def answer_of(self, result: QueryResult, path: str = "decoupled", threshold: float | None = None) -> Candidate | None:
        """The reader's answer to the question: its best candidate, where that span beats no-answer by more than
        the threshold `path` ("decoupled": the student, "coupled": the teacher of rerank_coupled) was calibrated
        to behind a retriever (or `threshold`, given); None is "no answer"."""
        top = result.candidates[0] if result.candidates else None
        threshold = self.no_answer.threshold("retrieved", path) if threshold is None else threshold
        if top is None or top.answer is None or not top.score > threshold:
            return None
        return top

    def answer_many(self, queries: list[str], k: int = 20, ids: list[list[str]] | None = None, on_the_fly: bool = False) -> list[QueryResult]:
        if self.task != Task.QA:
            raise DtxError(f"the model behind {self.store.uri} is a pair classifier, not a QA reader; use `dtx rerank`")
        return self.rerank_many(queries, k, ids, on_the_fly)

    def rerank_many(self, queries: list[str], k: int = 20, ids: list[list[str]] | None = None, on_the_fly: bool = False) -> list[QueryResult]:
        """Batched: the questions go through the input component together, then each meets its own
        candidates in its own cross call (so each question's stage timings are its own)."""
        if not queries:
            raise DtxError("no queries given")
        shared: dict[str, float] = {}
        q_hidden, q_mask = self._questions(queries, shared)
        results = []
        for n, query in enumerate(queries):
            timings = {"input": shared["input"] / len(queries)}
            order, retrieval = self._candidates(query, k, ids[n] if ids else None, timings)
            cached = self._fetch(order, on_the_fly, timings)
            results += self._score([query], q_hidden[n : n + 1], q_mask[n : n + 1], [cached], [retrieval], timings)
        return results

    def inline(self, texts: list[str], ids: list[str]) -> CachedWindows:
        """Passages given as text, windowed and encoded now by the input component (what the store holds for
        indexed ones), in the layout `fetch` returns; `ids[i]` names text i's windows."""
        seg = self.segmenter
        rows = [(pid, w, window) for pid, text in zip(ids, texts) for w, window in enumerate(seg.passage(text))]
        batch = seg.pad([window for _, _, window in rows])
        calls = self._calls(np.arange(len(rows)), batch.input_ids.shape[1])
        reps = np.concatenate([self.runner.encode(Batch(batch.input_ids[idx], batch.attention_mask[idx], batch.token_type_ids[idx])) for idx in calls])
        return CachedWindows(
            ids=[pid for pid, _, _ in rows], windows=[w for _, w, _ in rows], reps=reps, mask=batch.attention_mask,
            token_ids=[np.array(window.input_ids) for _, _, window in rows], offsets=[np.array(window.offsets).reshape(-1, 2) for _, _, window in rows],
            texts=dict(zip(ids, texts)),
        )  # fmt: skip

    def score_many(self, queries: list[str], candidates: list[CachedWindows], retrieval: list[dict[str, float]], timings: dict[str, float]) -> list[QueryResult]:
        """Several questions, each against its own candidate windows, in one input call and one cross call:
        what a server's micro-batch runs."""
        q_hidden, q_mask = self._questions(queries, timings)
        return self._score(queries, q_hidden, q_mask, candidates, retrieval, timings)

    def _score(self, queries: list[str], q_hidden: np.ndarray, q_mask: np.ndarray, candidates: list[CachedWindows], retrieval: list[dict[str, float]], timings: dict[str, float]) -> list[QueryResult]:
        """One cross call: question i (row i of q_hidden) against its own candidate windows, every window a row.

        One question is given once (bq = 1: the graph broadcasts it over the windows); several are repeated
        per row (bq = rows), questions and windows padded to the call's longest. A request's answer does not
        depend on what it shares the call with.
        """
        if len(queries) == 1:
            rows, q_rows, q_rows_mask = candidates[0], q_hidden, q_mask
        else:
            owner = np.concatenate([np.full(len(c.ids), n) for n, c in enumerate(candidates)])
            rows, q_rows, q_rows_mask = CachedWindows.concat(candidates), q_hidden[owner], q_mask[owner]
        mask = rows.mask
        t = time.perf_counter()
        out = self._cross_by_length(q_rows, q_rows_mask, rows.reps, mask)
        timings["cross"] = (time.perf_counter() - t) * 1e3
        results, row = [], 0
        for query, cached, hits in zip(queries, candidates, retrieval):
            n = len(cached.ids)
            mine = {k: v[row : row + n] for k, v in out.items()}
            cached.mask = mask[row : row + n]
            results.append(self._ranked(query, mine, [q_mask.shape[1]] * n, cached, hits, dict(timings)))
            row += n
        return results

    def _cross_by_length(self, q_hidden: np.ndarray, q_mask: np.ndarray, reps: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The cross component over the windows in `length_buckets` calls, windows sorted by length and each
        call cut to its own longest window, outputs put back in row order at the full width.

        Stored windows are padded to the longest of the set: on the dev store a call was 1.36x longer than
        its real tokens; on the CPU two calls made the cross component 1.26x faster and three 1.35x
        (docs/serving.md). A row's outputs do not depend on the call it was in (its padding is masked);
        slots beyond a row's call are filled with the lowest float, which no span decoding allows anyway.
        """
        lengths = mask.sum(1)
        buckets = [idx for idx in np.array_split(np.argsort(lengths, kind="stable"), min(self.length_buckets, len(lengths))) if len(idx)]
        parts = [call for idx in buckets for call in self._calls(idx, int(lengths[idx].max()))]
        if len(parts) <= 1:
            return self.runner.cross(q_hidden, q_mask, reps, mask)
        width = mask.shape[1]
        out: dict[str, np.ndarray] = {}
        for idx in parts:
            w = int(lengths[idx].max())
            rows_q = (q_hidden, q_mask) if q_hidden.shape[0] == 1 else (q_hidden[idx], q_mask[idx])
            part = self.runner.cross(*rows_q, reps[idx, :w], mask[idx, :w])
            for name, value in part.items():
                if name not in out:
                    tail = (value.shape[1] + width - w, *value.shape[2:]) if self.task == Task.QA else value.shape[1:]
                    out[name] = np.full((len(lengths), *tail), np.finfo(value.dtype).min, value.dtype)
                out[name][idx, : value.shape[1]] = value
        return out

    def _calls(self, rows: np.ndarray, width: int) -> list[np.ndarray]:
        """`rows` (windows of at most `width` tokens) cut into engine calls of at most `call_tokens` tokens."""
        step = len(rows) if self.call_tokens is None else max(1, self.call_tokens // width)
        return [rows[i : i + step] for i in range(0, len(rows), step)]

    def rerank_coupled(self, query: str, ids: list[str]) -> QueryResult:
        """The coupled teacher on the same stored windows of `ids` (the baseline a decoupled answer is judged against).

        Nothing cached is used but the windows' tokens: the teacher reads question and window together.
        """
        from dtx.model.samples import PairBatch

        timings: dict[str, float] = {}
        t = time.perf_counter()
        cached = self.store.fetch(list(dict.fromkeys(ids)))
        timings["fetch"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        seg = self.segmenter
        q = seg.pad([seg.question(query)])
        p = seg.pad([Segment(list(tok), [seg.passage_type] * len(tok), []) for tok in cached.token_ids])
        out = self.runner.coupled(PairBatch(q, p, seg.tokenizer.pad_token_id).coupled())
        timings["coupled"] = (time.perf_counter() - t) * 1e3
        first = int(q.attention_mask[0].sum())  # the window follows the question's real tokens
        cached.mask = p.attention_mask
        return self._ranked(query, out, [first] * len(cached.ids), cached, {}, timings)

    def _ranked(self, query: str, out: dict[str, np.ndarray], firsts: list[int], cached: CachedWindows, retrieval: dict, timings: dict[str, float]) -> QueryResult:
        """Candidates best first; a passage scores its best window."""
        best: dict[str, Candidate] = {}
        for row, pid in enumerate(cached.ids):
            cand = self._row_candidate(out, row, firsts[row], cached, pid, retrieval.get(pid))
            if pid not in best or cand.score > best[pid].score or np.isnan(best[pid].score):
                best[pid] = cand
        timings["total"] = sum(timings.values())
        # a NaN score (corrupt stored values) never ranks: it sorts after every real score
        return QueryResult(query, sorted(best.values(), key=lambda c: (np.isnan(c.score), -c.score if not np.isnan(c.score) else 0.0)), timings)

    def _row_candidate(self, out: dict[str, np.ndarray], row: int, first: int, cached: CachedWindows, pid: str, retrieval: float | None) -> Candidate:
        """One window's candidate; `first` is the output slot of the window's first token."""
        if self.task == Task.PAIR:
            logits = out["logits"][row].astype(np.float64)
            logp = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
            label = self.labels[int(logits.argmax())] if self.labels else str(int(logits.argmax()))
            return Candidate(pid, float(logp[self.positive]), retrieval, label=label)
        width = out["start_logits"].shape[1]
        n_pre, n_suf = len(self.segmenter.p_prefix), len(self.segmenter.p_suffix)
        length = int(cached.mask[row].sum())
        allowed = np.zeros(width, bool)
        allowed[first + n_pre : first + length - n_suf] = True  # passage specials are never answers
        span, score, null = best_span(out["start_logits"][row], out["end_logits"][row], allowed)
        text = start = end = None
        if span[0] >= 0:
            offsets = cached.offsets[row]
            start, end = int(offsets[span[0] - first][0]), int(offsets[span[1] - first][1])
            text = cached.texts.get(pid, "")[start:end]
        return Candidate(pid, float(score - null), retrieval, answer=text, start=start, end=end)
