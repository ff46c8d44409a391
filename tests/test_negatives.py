"""Hard negatives: BM25 neighbours among the training paragraphs, never the question's own or one holding its answer."""

from __future__ import annotations

import numpy as np

from dtx.data.negatives import BM25, hard_negatives, one_window_each
from dtx.data.pairs import Pair


def _paragraphs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(300)]
    return [" ".join(rng.choice(vocab, 40)) for _ in range(n)]


def test_bm25_ranks_by_shared_rare_words():
    texts = _paragraphs(50, 0)
    index = BM25(texts)
    hits = sum(index.top(" ".join(t.split()[:12]), 1) == [i] for i, t in enumerate(texts))
    assert hits >= 48  # twelve of a paragraph's words find it among 50
    assert index.top("nothing shared here", 5) == []  # no shared word, no candidate


def test_hard_negatives_are_other_paragraphs_without_the_answer():
    texts = _paragraphs(40, 1)
    train = []
    for i, t in enumerate(texts):
        words = t.split()
        train.append(Pair(" ".join(words[:6]), t, answers=[words[20]], id=f"q{i}"))
    negatives = hard_negatives(train, 1.5, 5, seed=3)
    assert 40 <= len(negatives) <= 80 and abs(len(negatives) / 40 - 1.5) < 0.3
    own = {p.question: p for p in train}
    for neg in negatives:
        q = own[neg.question]
        assert neg.passage != q.passage and neg.answers == [] and neg.passage in texts
        assert q.answers[0] not in neg.passage.split()
    again = hard_negatives(train, 1.5, 5, seed=3)
    assert [(n.question, n.passage) for n in again] == [(n.question, n.passage) for n in negatives]
    assert hard_negatives(train, 0.0, 5) == []


def test_one_window_each_keeps_one_per_example():
    class F:
        def __init__(self, example: int, window: int) -> None:
            self.example, self.window = example, window

    features = [F(0, 0), F(0, 1), F(0, 2), F(1, 0), F(2, 0), F(2, 1)]
    kept = one_window_each(features, seed=0)
    assert [f.example for f in kept] == [0, 1, 2]
