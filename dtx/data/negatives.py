"""Hard negatives for QA training: other training paragraphs that a retriever ranks high for a question.

Deployed, a reader scores the retriever's top-k paragraphs, and all but one of them lack the
answer. A reader trained only on each question's own paragraph never learns to say "no answer"
to a plausible wrong paragraph (Disfl-QA 2/4 4x: 99.2% of its teacher on gold paragraphs, 89.9%
behind BM25 top-20). So training adds, per question, paragraphs that BM25 ranks high among the
*training* split's own paragraphs (never a held-out one), labelled "no answer". A paragraph that
contains the question's answer text is skipped: it may well answer the question.

BM25 here is a small in-memory Okapi BM25 (k1 = 1.2, b = 0.75) over lower-cased word tokens:
the training split is a few thousand paragraphs, and the point is the kind of neighbour a lexical
retriever returns, not the store's exact index.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from dtx.data.pairs import Pair
from dtx.data.qa import locate_answer

_WORD = re.compile(r"\w+")
K1, B = 1.2, 0.75


def words(text: str) -> list[str]:
    """Lower-cased word tokens (what both the index and the queries are cut into)."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed list of texts; `top(query, k)` gives the k best indices."""

    def __init__(self, texts: list[str]) -> None:
        self.vocab: dict[str, int] = {}
        docs = [Counter(words(t)) for t in texts]
        for doc in docs:
            for w in doc:
                self.vocab.setdefault(w, len(self.vocab))
        lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
        df = np.zeros(len(self.vocab))
        self.postings: list[list[tuple[int, int]]] = [[] for _ in self.vocab]
        for i, doc in enumerate(docs):
            for w, tf in doc.items():
                j = self.vocab[w]
                df[j] += 1
                self.postings[j].append((i, tf))
        n = len(texts)
        self.idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        self.norm = K1 * (1 - B + B * lengths / max(lengths.mean(), 1.0))
        self.size = n

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(self.size)
        for w in set(words(query)):
            j = self.vocab.get(w)
            if j is None:
                continue
            for i, tf in self.postings[j]:
                out[i] += self.idf[j] * tf * (K1 + 1) / (tf + self.norm[i])
        return out

    def top(self, query: str, k: int) -> list[int]:
        s = self.scores(query)
        hits = np.flatnonzero(s > 0)
        return hits[np.argsort(-s[hits], kind="stable")][:k].tolist()


def draws(mean: float, rng: np.random.Generator) -> int:
    """How many extra items one example gets for a `mean` per example: floor(mean), plus one with probability equal to the fraction."""
    return int(mean) + int(rng.random() < mean - int(mean))


def hard_negatives(train: list[Pair], per_question: float, pool: int, seed: int = 0) -> list[Pair]:
    """Negative pairs for `train`'s questions: on average `per_question` each, drawn from BM25's top `pool`.

    A question gets floor(per_question) negatives, plus one more with probability equal to the
    fraction; each is drawn uniformly from the top-`pool` other paragraphs that do not contain its
    answer text. Deterministic for a seed. The pairs carry no answer (SQuAD 2.0's "no answer").
    """
    if per_question <= 0 or not train:
        return []
    passages = sorted({p.passage for p in train})
    index = BM25(passages)
    rng = np.random.default_rng(seed)
    out = []
    for n, pair in enumerate(train):
        want = draws(per_question, rng)
        if not want:
            continue
        ranked = [passages[i] for i in index.top(pair.question, pool + 1)]
        candidates = [p for p in ranked if p != pair.passage and not any(locate_answer(a, p) for a in pair.answers)][:pool]
        for j in rng.permutation(len(candidates))[:want]:
            out.append(Pair(pair.question, candidates[j], None, [], f"{pair.id or n}-neg{len(out)}"))
    return out


def one_window_each(features: list, seed: int = 0) -> list:
    """One window per negative pair, drawn at random: a long negative paragraph must not outweigh a short one.

    `features` are QAFeature-like objects with an `example` index; the order of examples is kept.
    """
    by_example: dict[int, list] = {}
    for f in features:
        by_example.setdefault(f.example, []).append(f)
    rng = np.random.default_rng(seed)
    return [windows[int(rng.integers(len(windows)))] for _, windows in sorted(by_example.items())]

