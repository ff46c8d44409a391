"""What shape of cross call is cheapest on this machine: the two measurements behind docs/serving.md.

    .venv/bin/python scripts/cross_calls.py --store runs/recipe/qa-dev-store --queries data/disfl_qa.task.json.gz

1. merging: the first 48 held-out questions' cross calls, 1, 2, 6 or 12 questions per call (one window
   set per call, as the server's micro-batcher would merge them), each set padded to its longest window;
2. length buckets: 60 held-out questions through `QueryPipeline.answer` (top 20) with their windows in
   1, 2 or 3 calls by length, the three settings interleaved question by question.
"""

from __future__ import annotations

import argparse

import numpy as np

from dtx.data.pairs import read_pairs
from dtx.data.splits import split_by_passage
from dtx.query import QueryPipeline


def merging(pipe: QueryPipeline, questions: list[str]) -> None:
    pipe.length_buckets = 1  # one call per merged set, as measured before length buckets existed
    cands, hits = [], []
    for q in questions:
        h = pipe.store.search(q, 20)
        hits.append(dict(h))
        cands.append(pipe.store.fetch([i for i, _ in h]))
    pipe.score_many(questions[:1], cands[:1], hits[:1], {})  # warm-up
    for group in (1, 2, 6, 12):
        cross, tokens, real = 0.0, 0, 0
        for s in range(0, len(questions), group):
            timings: dict[str, float] = {}
            pipe.score_many(questions[s : s + group], cands[s : s + group], hits[s : s + group], timings)
            cross += timings["cross"]
            sets = cands[s : s + group]
            tokens += sum(len(c.ids) for c in sets) * max(c.reps.shape[1] for c in sets)
            real += sum(int(c.mask.sum()) for c in sets)
        print(f"{group:2d} questions per call: cross {cross / len(questions):.0f} ms per question, window tokens padded / real {tokens / real:.2f}x")


def length_buckets(pipe: QueryPipeline, questions: list[str]) -> None:
    cross: dict[int, list[float]] = {1: [], 2: [], 3: []}
    total: dict[int, list[float]] = {1: [], 2: [], 3: []}
    pipe.answer(questions[0])  # warm-up
    for i, q in enumerate(questions):
        for b in ((1, 2, 3), (2, 3, 1), (3, 1, 2))[i % 3]:  # interleaved: drift in machine speed hits all three
            pipe.length_buckets = b
            r = pipe.answer(q, k=20)
            cross[b].append(r.timings_ms["cross"])
            total[b].append(r.timings_ms["total"])
    for b in (1, 2, 3):
        print(f"{b} call(s) by length: cross p50 {np.median(cross[b]):.0f} ms, whole query p50 {np.median(total[b]):.0f} ms, cross vs one call {np.median(cross[1]) / np.median(cross[b]):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--queries", required=True)
    args = ap.parse_args()
    dev = split_by_passage(read_pairs(args.queries))[1]
    questions = [q for q in dict.fromkeys(p.question for p in dev) if q.strip()]
    with QueryPipeline.open(args.store) as pipe:
        merging(pipe, questions[:48])
        length_buckets(pipe, questions[:60])


if __name__ == "__main__":
    main()
