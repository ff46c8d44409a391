"""Small helpers shared by the tests: build a decoupled model in memory, make padded pair batches."""

from __future__ import annotations

import random

import torch

from dtx.model.segments import PairSegmenter
from dtx.model.surgery import build_decoupled, decouple_config_for, load_source
from tiny_models import load_tokenizer, random_text


def decoupled(model_dir, split: int, compress: int = 1, task: str = "qa", cross_embeddings: bool = True, seed: int = 0):
    """(teacher, decoupled model, segmenter) for a source model directory."""
    torch.manual_seed(seed)
    teacher = load_source(model_dir, task)
    cfg = decouple_config_for(teacher.config, split, compress, task, max_question_len=24, max_passage_len=64, cross_embeddings=cross_embeddings)
    seg = PairSegmenter(load_tokenizer(model_dir), cfg.max_question_len, cfg.max_passage_len, cfg.doc_stride)
    return teacher, build_decoupled(teacher, cfg), seg


def tensors(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))


def texts(seed: int, n: int, lo: int, hi: int) -> list[str]:
    rng = random.Random(seed)
    return [random_text(rng, rng.randint(lo, hi)) for _ in range(n)]


def real_slots(outputs, q_mask: torch.Tensor, p_mask: torch.Tensor, row: int) -> list[torch.Tensor]:
    """The outputs of one pair at real (unpadded) slots only: padding slots are free by design."""
    if len(outputs) == 1:  # pair head: (b, labels)
        return [outputs[0][row]]
    lq = q_mask.shape[1]
    qi = q_mask[0 if q_mask.shape[0] == 1 else row].bool()
    pi = p_mask[row].bool()
    return [torch.cat([o[row, :lq][qi], o[row, lq:][pi]]) for o in outputs]
