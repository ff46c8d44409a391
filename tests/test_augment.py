"""Teacher-scored augmentation: embedding neighbours, which words may be swapped, unlabelled copies in the loss and in a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dtx.data.augment import BPE_SPACE, WordNeighbours, perturb
from dtx.errors import ConfigError
from dtx.model.segments import Segment
from dtx.train.config import DistillConfig
from dtx.train.losses import NO_LABEL, kd_loss, labelled_ce

WORDPIECE = ["[PAD]", "[CLS]", "[SEP]", "?", "river", "stream", "creek", "king", "queen", "##s", "a", "12", "city", "town"]


def _segment(vocab: list[str], tokens: list[str]) -> Segment:
    ids = [vocab.index(t) for t in tokens]
    return Segment(ids, [0] * len(ids), [(0, 0)] * len(ids))


def _embeddings(vocab: list[str], seed: int) -> torch.Tensor:
    """Random rows, with river/stream/creek, king/queen and city/town built close to each other."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(len(vocab), 8))
    for group in (("river", "stream", "creek"), ("king", "queen"), ("city", "town")):
        base = rng.normal(size=8) * 5
        for w in group:
            e[vocab.index(w)] = base + rng.normal(size=8) * 0.1
    return torch.tensor(e, dtype=torch.float32)


def test_neighbours_are_the_nearest_whole_words_by_cosine_never_the_word_itself():
    vocab = WORDPIECE
    e = _embeddings(vocab, 0)
    nb = WordNeighbours(vocab, e, set(range(len(vocab))), k=2)
    words = [i for i, t in enumerate(vocab) if t.isalpha() and len(t) > 1]  # no specials, "##s", "?", "a" or "12"
    assert set(nb.candidates) == set(words)
    unit = torch.nn.functional.normalize(e.double(), dim=-1)
    for i, cands in nb.candidates.items():
        assert i not in cands and all(c in words for c in cands)
        sims = {j: float(unit[i] @ unit[j]) for j in words if j != i}
        assert sorted(sims, key=sims.get, reverse=True)[:2] == cands
    river = vocab.index("river")
    assert {vocab[c] for c in nb.candidates[river]} == {"stream", "creek"}
    only = WordNeighbours(vocab, e, {river}, k=2)  # built for the words that occur only
    assert set(only.candidates) == {river}


def test_a_word_carried_on_by_a_continuation_piece_is_never_swapped():
    vocab = WORDPIECE
    nb = WordNeighbours(vocab, _embeddings(vocab, 1), set(range(len(vocab))), k=1)
    seg = _segment(vocab, ["[CLS]", "king", "##s", "river", "a", "city", "?", "[SEP]"])
    assert nb.replaceable(seg.input_ids) == [3, 5]  # "king" goes on as "kings"; "a", "?" and specials are no candidates
    rng = np.random.default_rng(0)
    copies = [perturb(seg, nb, rng, rate=1.0) for _ in range(20)]
    for c in copies:
        assert len(c) == len(seg) and c.token_type_ids == seg.token_type_ids
        assert [i for n, i in enumerate(c.input_ids) if n not in (3, 5)] == [i for n, i in enumerate(seg.input_ids) if n not in (3, 5)]
        assert vocab[c.input_ids[3]] in ("stream", "creek") and vocab[c.input_ids[5]] == "town"
    assert perturb(seg, nb, rng, rate=0.0).input_ids == seg.input_ids
    again = [perturb(seg, nb, np.random.default_rng(0), rate=0.5).input_ids for _ in range(2)]
    assert again[0] == again[1]  # deterministic for a seed


def test_byte_level_bpe_words_start_with_the_space_marker():
    vocab = ["<s>", "</s>", "?"] + [BPE_SPACE + w for w in ("river", "stream", "creek", "king", "queen")] + ["s", "river"]
    nb = WordNeighbours(vocab, torch.randn(len(vocab), 8, generator=torch.Generator().manual_seed(0)), set(range(len(vocab))), k=2)
    assert set(nb.candidates) == set(range(3, 8))  # "river" without the marker continues a word: no candidate
    seg = _segment(vocab, ["<s>", BPE_SPACE + "king", "s", BPE_SPACE + "river", "?", "</s>"])
    assert nb.replaceable(seg.input_ids) == [3]  # "Ġking" is carried on by "s"; "?" does not carry a word on


def test_unlabelled_rows_leave_ce_and_stay_in_the_kl():
    rng = np.random.default_rng(3)
    s, t = torch.tensor(rng.normal(size=(5, 4))), torch.tensor(rng.normal(size=(5, 4)))
    y = torch.tensor([1, NO_LABEL, 3, NO_LABEL, 0])
    ce, kl = kd_loss(s, t, y, 2.0)
    logp = torch.log_softmax(s, -1)
    hand = -np.mean([float(logp[i, int(y[i])]) for i in (0, 2, 4)])
    assert abs(float(ce) - hand) < 1e-12
    _, kl_all = kd_loss(s, t, torch.tensor([1, 2, 3, 0, 0]), 2.0)
    assert float(kl) == float(kl_all) > 0  # the teacher's targets count for every row
    none = torch.full((5,), NO_LABEL)
    x = s.clone().requires_grad_(True)
    zero = labelled_ce(x, none)
    zero.backward()
    assert zero.item() == 0 and torch.all(x.grad == 0) and not math.isnan(zero.item())


def test_augmented_copies_carry_no_label_and_keep_the_passage():
    from dtx.train.distill import Example, augmented, make_batch

    vocab = WORDPIECE
    nb = WordNeighbours(vocab, _embeddings(vocab, 2), set(range(len(vocab))), k=2)
    q = _segment(vocab, ["[CLS]", "river", "king", "[SEP]"])
    p = Segment([vocab.index("city"), vocab.index("town"), 2], [1, 1, 1], [(0, 4), (5, 9), (0, 0)])
    examples = [Example(q, p, (0, 1)), Example(q, p, (-1, -1))]
    copies = augmented(examples, nb, 1.5, seed=0)
    assert 2 <= len(copies) <= 4 and all(c.target == (NO_LABEL, NO_LABEL) and c.passage is p for c in copies)
    assert [c.question.input_ids for c in augmented(examples, nb, 1.5, seed=0)] == [c.question.input_ids for c in copies]
    assert augmented(examples, nb, 0.0, seed=0) == []

    class Seg:  # the padding a PairSegmenter does, for this test's three-token segments
        max_question_len, max_passage_len = 4, 3

        def pad(self, segments, length):
            from dtx.model.segments import Batch

            ids = np.array([s.input_ids + [0] * (length - len(s)) for s in segments])
            return Batch(ids, (ids > 0).astype(np.int64), np.zeros_like(ids))

    b = make_batch(Seg(), examples + copies[:1], qa=True)
    lq = b["q"][0].shape[1]
    assert b["labels"][0].tolist() == [lq, 0, NO_LABEL] and b["labels"][1].tolist() == [lq + 1, 0, NO_LABEL]


def test_augment_side_picks_which_text_a_copy_varies():
    """Passage copies vary the passage only (at the lower passage rate), question copies the question only, both both."""
    from dtx.data.augment import PASSAGE_RATE
    from dtx.train.distill import Example, augmented

    vocab = WORDPIECE
    nb = WordNeighbours(vocab, _embeddings(vocab, 2), set(range(len(vocab))), k=2)
    q = _segment(vocab, ["[CLS]", "river", "king", "[SEP]"])
    words = ["city", "town", "river", "queen"] * 25  # 100 replaceable passage words
    p = _segment(vocab, words + ["[SEP]"])
    examples = [Example(q, p, (0, 1))] * 8
    for side in ("question", "passage", "both"):
        copies = augmented(examples, nb, 1.0, seed=0, side=side)
        assert len(copies) == 8 and all(c.target == (NO_LABEL, NO_LABEL) for c in copies)
        q_changed = sum(c.question.input_ids != q.input_ids for c in copies)
        p_swaps = [sum(a != b for a, b in zip(c.passage.input_ids, p.input_ids)) for c in copies]
        assert all(len(c.passage) == len(p) and c.passage.token_type_ids == p.token_type_ids for c in copies)
        assert (q_changed > 0) == (side != "passage") and all(c.question is q for c in copies) == (side == "passage")
        assert (sum(p_swaps) > 0) == (side != "question") and all(c.passage is p for c in copies) == (side == "question")
        if side == "passage":  # 800 draws at the passage rate: far from the question rate of 0.4
            assert abs(sum(p_swaps) / 800 - PASSAGE_RATE) < 0.05
    with pytest.raises(ConfigError, match="augment_side 'answer' is not one of question, passage, both"):
        DistillConfig(augment_side="answer").check()


def test_augment_needs_a_teacher():
    with pytest.raises(ConfigError, match="--labels-only"):
        DistillConfig(augment=1.0, labels_only=True).check()

