"""The decoupled transformer (docs/design.md, "The model"), read top to bottom.

    input component:  rep = compress(layers[0:N](EmbLN(word + pos + type)))   one text at a time
    cross component:  out = head(layers[N:L](decompress(rep_q ++ rep_p) + pos_x + type_x))

The transformer layers, embeddings and heads are the source model's own `transformers` modules
(deep copies), so a decoupled model at split N computes exactly what the source computes, up to
the split, and reads the same weights after it.
"""

from __future__ import annotations

import torch
from torch import nn

from dtx.model.config import MASK_VALUE, DecoupleConfig


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 0/1 mask -> (B, 1, 1, S) additive mask: 0 for tokens, MASK_VALUE for padding."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


def segment_positions(mask: torch.Tensor, start: torch.Tensor | int) -> torch.Tensor:
    """Position ids that count only real tokens: start, start+1, ... (padding slots get junk).

    Counting with a cumulative sum instead of arange makes the result independent of how much
    right (or left) padding a row carries.
    """
    return start + (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, S)


def layer_states(layers: nn.ModuleList, h: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """`h`, then the output of each layer in turn (layer-wise distillation compares every one)."""
    ext = additive_mask(mask, h.dtype)  # (B, 1, 1, S)
    states = [h]
    for layer in layers:
        out = layer(states[-1], ext)
        states.append(out[0] if isinstance(out, tuple) else out)  # older transformers layers return (hidden, ...)
    return states


def run_layers(layers: nn.ModuleList, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return layer_states(layers, h, mask)[-1]


class InputComponent(nn.Module):
    """Embeddings + the lower N layers + compressor, run on one segment (question or passage)."""

    def __init__(
        self,
        embeddings: nn.Module,
        embeddings_project: nn.Module,
        layers: nn.ModuleList,
        compressor: nn.Module,
        position_offset: int,
    ) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.embeddings_project = embeddings_project  # ELECTRA: embedding_size -> hidden; else Identity
        self.layers = layers
        self.compressor = compressor  # Linear(hidden -> hidden/k) or Identity
        self.position_offset = position_offset

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """What enters the first layer, (B, S, hidden): word + position (real tokens counted) + type, normalised."""
        positions = segment_positions(attention_mask, self.position_offset)  # (B, S)
        h = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=positions)
        return self.embeddings_project(h)  # (B, S, hidden)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """The layer-N hidden states before compression, (B, S, hidden)."""
        return run_layers(self.layers, self.embed(input_ids, attention_mask, token_type_ids), attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.compressor(self.encode(input_ids, attention_mask, token_type_ids))  # (B, S, rep_dim)


class QAHead(nn.Module):
    """Start/end logits over every slot of the pair; slot 0 ([CLS]) scores "no answer"."""

    def __init__(self, qa_outputs: nn.Linear) -> None:
        super().__init__()
        self.qa_outputs = qa_outputs

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.qa_outputs(h)  # (B, S, 2)
        start, end = logits.unbind(-1)  # (B, S) each
        return start.contiguous(), end.contiguous()


class PairHead(nn.Module):
    """Classification / re-ranking logits from the first token, as the source model computes them."""

    def __init__(self, classifier: nn.Module, pooler: nn.Module | None, dropout: float) -> None:
        super().__init__()
        self.pooler = pooler  # BERT pools [CLS] (dense + tanh) before its classifier
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor]:
        if self.pooler is None:
            return (self.classifier(h),)  # ELECTRA/RoBERTa heads read h[:, 0] themselves -> (B, labels)
        return (self.classifier(self.dropout(self.pooler(h))),)  # (B, labels)


class CrossComponent(nn.Module):
    """Decompressor + fresh position/segment embeddings + the upper M layers + head, on the pair."""

    def __init__(
        self,
        decompressor: nn.Module,
        pos_x: nn.Embedding | None,
        type_x: nn.Embedding | None,
        layers: nn.ModuleList,
        head: nn.Module,
        position_offset: int,
    ) -> None:
        super().__init__()
        self.decompressor = decompressor  # Linear(hidden/k -> hidden) or Identity
        self.pos_x = pos_x  # None in the DeFormer variant
        self.type_x = type_x  # None for models without token types, and in the DeFormer variant
        self.layers = layers
        self.head = head
        self.position_offset = position_offset

    def embed(
        self, q_hidden: torch.Tensor, q_mask: torch.Tensor, p_hidden: torch.Tensor, p_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decompress both sides, add the pair's global positions and segments, pair rows up.

        Returns the question states and mask gathered to one row per passage, and the passage states.
        Row i of the passages pairs with question i % bq: bq = 1 (one question against b passages) and
        bq = b both work, and the graph needs no shape guard tying bq to b, so it exports with both
        batch axes dynamic.
        """
        bq = torch.ones_like(q_mask[:, 0]).sum()  # bq as a tensor: ONNX exports Mod of tensors, not of a symbolic int
        rows = torch.arange(p_hidden.shape[0], device=p_hidden.device) % bq  # (b,)
        xq = self.decompressor(q_hidden)  # (bq, lq, hidden)
        xp = self.decompressor(p_hidden)  # (b, lp, hidden)
        if self.pos_x is not None:
            xq = xq + self.pos_x(segment_positions(q_mask, self.position_offset))
            q_len = q_mask.long().sum(-1, keepdim=True)[rows]  # (b, 1) real question tokens of each pair
            xp = xp + self.pos_x(segment_positions(p_mask, self.position_offset + q_len))  # (b, lp)
        if self.type_x is not None:
            xq = xq + self.type_x.weight[0]
            xp = xp + self.type_x.weight[1]
        return xq[rows], q_mask[rows], xp  # (b, lq, hidden), (b, lq), (b, lp, hidden)

    def states(
        self, q_hidden: torch.Tensor, q_mask: torch.Tensor, p_hidden: torch.Tensor, p_mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The pair's states entering the first cross layer, then after each (each (b, lq + lp, hidden)), and its mask.

        Layer-wise distillation compares state j with the teacher's after N + j layers.
        """
        xq, q_mask, xp = self.embed(q_hidden, q_mask, p_hidden, p_mask)
        x = torch.cat([xq, xp], dim=1)  # (b, lq + lp, hidden)
        mask = torch.cat([q_mask, p_mask], dim=1)  # (b, lq + lp)
        return layer_states(self.layers, x, mask), mask

    def hidden(
        self, q_hidden: torch.Tensor, q_mask: torch.Tensor, p_hidden: torch.Tensor, p_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer states of the pair (b, lq + lp, hidden) and its mask."""
        states, mask = self.states(q_hidden, q_mask, p_hidden, p_mask)
        return states[-1], mask

    def forward(
        self, q_hidden: torch.Tensor, q_mask: torch.Tensor, p_hidden: torch.Tensor, p_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return self.head(self.hidden(q_hidden, q_mask, p_hidden, p_mask)[0])


class CoupledModel(nn.Module):
    """The teacher, recomputed from its own modules with dtx's mask and positions.

    This is what `coupled.onnx` exports: the same embeddings, layers and head as the Hugging Face
    model, but with the float16-safe additive mask and padding-independent positions that the
    decoupled graphs use, so the baseline gets exactly the same treatment by every engine.
    """

    def __init__(self, encoder: InputComponent, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder  # all L layers, no compressor
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.encoder.encode(input_ids, attention_mask, token_type_ids))


class DecoupledModel(nn.Module):
    """Input component (shared by both sides) + cross component; `forward` runs a batch of pairs."""

    def __init__(self, input: InputComponent, cross: CrossComponent, config: DecoupleConfig) -> None:
        super().__init__()
        self.input = input
        self.cross = cross
        self.config = config

    def forward(
        self,
        q_ids: torch.Tensor,
        q_mask: torch.Tensor,
        q_types: torch.Tensor,
        p_ids: torch.Tensor,
        p_mask: torch.Tensor,
        p_types: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        q = self.input(q_ids, q_mask, q_types)  # (bq, lq, rep_dim)
        p = self.input(p_ids, p_mask, p_types)  # (b, lp, rep_dim)
        return self.cross(q, q_mask, p, p_mask)
