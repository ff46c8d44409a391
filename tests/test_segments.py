"""The tokenisation helper splits pairs exactly as the coupled tokenizer does."""

from __future__ import annotations

import pytest

from dtx.errors import ConfigError
from dtx.model.segments import PairSegmenter
from helpers import texts
from tiny_models import TINY_ARCHS, load_tokenizer

from conftest import ALL_ARCHS


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_segments_concatenate_to_the_coupled_pair(arch, model_dir):
    tok = load_tokenizer(model_dir(arch))
    seg = PairSegmenter(tok, 64, 200, 32)
    for q, p in zip(texts(1, 10, 1, 20), texts(2, 10, 1, 60)):
        qs, (ps,) = seg.question(q), seg.passage(p)
        pair = tok(q, p)
        assert qs.input_ids + ps.input_ids == pair["input_ids"]
        if "token_type_ids" in pair:
            assert qs.token_type_ids + ps.token_type_ids == pair["token_type_ids"]
        # offsets point into the passage text
        for (s, e), i in zip(ps.offsets, ps.input_ids):
            if e > s:
                assert tok.decode([i]).strip().lstrip("#").lower() in p[s:e].lower()


@pytest.mark.parametrize("arch", [*TINY_ARCHS, "minilm"])
def test_long_passage_windows_match_the_coupled_tokenizer(arch, model_dir):
    tok = load_tokenizer(model_dir(arch))
    max_q, max_p, stride = 48, 24, 8  # questions fit, passages need several windows
    seg = PairSegmenter(tok, max_q, max_p, stride)
    for q, p in zip(texts(5, 5, 2, 8), texts(6, 5, 30, 90)):
        qs, windows = seg.question(q), seg.passage(p)
        assert len(windows) > 1 and len(qs) < max_q
        ref = tok(q, p, truncation="only_second", max_length=len(qs) + max_p, stride=stride, return_overflowing_tokens=True)
        assert [qs.input_ids + w.input_ids for w in windows] == ref["input_ids"]
        assert all(len(w) <= max_p for w in windows)


def test_long_question_is_cut(model_dir):
    seg = PairSegmenter(load_tokenizer(model_dir("bert")), 10, 40, 8)
    q = seg.question(" ".join(["river"] * 50))
    assert len(q) == 10 and q.input_ids[-1] == seg.tokenizer.sep_token_id


def test_pad_checks_length(model_dir):
    seg = PairSegmenter(load_tokenizer(model_dir("bert")), 10, 40, 8)
    batch = seg.pad([seg.question("the river"), seg.question("the river in paris")])
    assert batch.input_ids.shape == batch.attention_mask.shape and batch.attention_mask[0].sum() < batch.attention_mask[1].sum()
    with pytest.raises(ConfigError, match="does not fit"):
        seg.pad([seg.question("the river in paris")], 2)
    with pytest.raises(ConfigError, match="stride"):
        PairSegmenter(seg.tokenizer, 10, 12, 11)
