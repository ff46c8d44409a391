"""Teacher-scored augmentation: copies of the training examples with some words swapped for near synonyms.

A decoupled student has to learn cross-attention its lower layers no longer do, from the teacher's
soft targets. Small training sets (Disfl-QA: 7k questions) run out of inputs before the student
matches the teacher; the teacher can score any input, so more inputs are free labels. This is
TinyBERT's data augmentation, cut to what a cross-encoder needs: in each copy, every single-piece
word of the question (the claim, for pair tasks) is replaced with probability `RATE` by one of its
`NEIGHBOURS` nearest single-piece words in the teacher's own word embeddings (cosine; the table
stands in for TinyBERT's GloVe and masked-LM candidates, so no second model is needed). Which
text is varied is a setting (`dtx.train.config.AUGMENT_SIDES`): the question only, the passage
only (its words swapped with the lower probability `PASSAGE_RATE`), or both. A copy carries no gold label (a swapped word may change
the answer): it trains on the teacher's targets only.

Replacements are single pieces, so a copy has the original's length and token types; its character
offsets still point into the original text (training never reads a question's offsets).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch

from dtx.model.segments import Segment

RATE = 0.4  # TinyBERT's p_t: the chance each eligible word is replaced
# A passage is several times a question's length and carries its answer: at 0.4 most of its sentences
# would change meaning. At 0.15 about one eligible word in seven moves, which varies the surface the
# student reads (what is new on unseen paragraphs) while the teacher keeps its top span on 88% of
# answerable training windows (scripts/augment_agreement.py; the question's 0.4 copies: 63%).
PASSAGE_RATE = 0.15
NEIGHBOURS = 15  # TinyBERT's K: candidates per word
BPE_SPACE = "\u0120"  # "Ġ": byte-level BPE (RoBERTa) marks a piece that starts a word; WordPiece marks continuations ("##")


class WordNeighbours:
    """For each single-piece word of a vocabulary, its nearest single-piece words by the embeddings' cosine.

    A word piece is a candidate when it starts a word and is all letters (two or more), in either
    tokenizer family: WordPiece (BERT, ELECTRA, MiniLM) marks continuations with "##", byte-level BPE
    (RoBERTa) marks word starts with "Ġ". Built only for the words that occur (`needed`): the
    vocabulary's full square would be 30k x 30k.
    """

    def __init__(self, vocab: list[str], embeddings: torch.Tensor, needed: set[int], k: int = NEIGHBOURS) -> None:
        self.vocab = vocab
        bpe = any(t.startswith(BPE_SPACE) for t in vocab)
        self.word = re.compile(f"^{BPE_SPACE}[A-Za-z]{{2,}}$" if bpe else r"^[A-Za-z]{2,}$")
        self.continues = re.compile(r"^[A-Za-z]" if bpe else r"^##")  # a piece that carries on the word before it
        words = [i for i, t in enumerate(vocab) if self.word.match(t)]
        table = torch.nn.functional.normalize(embeddings.detach().float()[words], dim=-1)  # (W, D)
        column = {w: j for j, w in enumerate(words)}
        wanted = sorted(set(needed) & set(words)) if len(words) > 1 else []
        self.candidates: dict[int, list[int]] = {}
        for lo in range(0, len(wanted), 1024):
            chunk = wanted[lo : lo + 1024]
            sims = table[[column[i] for i in chunk]] @ table.T  # (C, W)
            sims[torch.arange(len(chunk)), [column[i] for i in chunk]] = -2.0  # never the word itself
            top = sims.topk(min(k, len(words) - 1), dim=-1).indices
            for i, row in zip(chunk, top.tolist()):
                self.candidates[i] = [words[j] for j in row]

    def replaceable(self, ids: list[int]) -> list[int]:
        """Positions of `ids` holding a whole one-piece word that has candidates (the next piece does not carry it on)."""
        out = []
        for n, i in enumerate(ids):
            follows = self.vocab[ids[n + 1]] if n + 1 < len(ids) else ""
            if i in self.candidates and not self.continues.match(follows):
                out.append(n)
        return out


def perturb(segment: Segment, neighbours: WordNeighbours, rng: np.random.Generator, rate: float = RATE) -> Segment:
    """A copy of `segment` with each replaceable word swapped, with probability `rate`, for a random neighbour."""
    ids = list(segment.input_ids)
    for n in neighbours.replaceable(ids):
        if rng.random() < rate:
            options = neighbours.candidates[ids[n]]
            ids[n] = options[int(rng.integers(len(options)))]
    return replace(segment, input_ids=ids)

