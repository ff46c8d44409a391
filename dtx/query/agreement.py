"""Does the store change answers? Store representations vs the same windows encoded on the fly.

The fp16 store should match within fp16 rounding; the int8 store's bar is the same top answer /
ranking for at least 99% of real queries. Both runs read the same BM25 candidates, so only the
passage representations differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from dtx.data.pairs import read_pairs
from dtx.errors import DtxError


def store_agreement(store: str, queries: str | Path, limit: int, k: int, engine_dir: str | None = None, progress: bool = True) -> dict:
    """Top-1 (QA: passage and span), full-ranking agreement and score drift over real queries."""
    from dtx.query import QueryPipeline

    questions = list(dict.fromkeys(p.question for p in read_pairs(queries)))[:limit]
    if not questions:
        raise DtxError(f"{queries} holds no questions to compare the store's answers on; pass a file of question/passage pairs")
    top = ranking = 0
    diffs: list[float] = []
    with QueryPipeline.open(store, engine_dir) as pipe:
        for q in tqdm(questions, desc="agreement", unit="query", disable=not progress):
            cached = pipe.rerank(q, k)
            fresh = pipe.rerank(q, k, ids=[c.id for c in cached.candidates], on_the_fly=True)
            a, b = cached.candidates, fresh.candidates
            top += (a[0].id, a[0].answer, a[0].label) == (b[0].id, b[0].answer, b[0].label)
            ranking += [c.id for c in a] == [c.id for c in b]
            by_id = {c.id: c.score for c in b}
            diffs += [abs(c.score - by_id[c.id]) for c in a]
        dtype = pipe.store.info.dtype
    n = len(questions)
    return {
        "store dtype": dtype,
        "queries": n,
        "candidates per query": k,
        "same top answer %": round(100 * top / n, 2),
        "same full ranking %": round(100 * ranking / n, 2),
        "max |score diff|": float(np.max(diffs)),
        "mean |score diff|": float(np.mean(diffs)),
    }
