"""The distillation loss (docs/design.md, "Training"), term by term.

    loss = a * CE(student, labels) + (1 - a) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
         + w_h * (MSE(last hidden) + MSE(hidden, every other cross layer) + MSE(state entering the cross layers))
         + w_a * MSE(last layer's attention scores)

The attention term compares the unnormalised scores QK^T / sqrt(d) (before mask and softmax), as
TinyBERT, whose loss the paper's recipe follows, does: the probabilities' squared differences are
tiny (a Disfl-QA 2/4 run logged 0.000-0.002 against hidden 0.077) and moved nothing. The two
layer-wise terms are DeFormer's: the student's state entering its cross layers (the input
component's output, each text alone, decompressed and re-embedded) against the teacher's after the
same N layers over the pair, and each intermediate cross layer against the teacher's same layer.
Student and teacher see the same slot layout (see `dtx.train.distill`), so every term is an
elementwise comparison restricted to real slots by a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASKED = -1e4  # logits of slots that can never be an answer (padding) in QA distributions
NO_LABEL = -100  # the target of an example without a gold label (an augmented copy): it trains on the teacher's targets only


@dataclass
class LossTerms:
    total: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor
    hidden: torch.Tensor  # last layer
    attention: torch.Tensor  # last layer's scores (or probabilities, the old target)
    cross_layers: torch.Tensor  # mean over the intermediate cross layers (0 when off or none)
    input_layer: torch.Tensor  # the state entering the cross layers vs the teacher's after N layers (0 when off)

    def items(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}

    def weighted(self, alpha: float, hidden_weight: float, attention_weight: float) -> dict[str, torch.Tensor]:
        """Each term as it enters `total` (what its share of the gradient is measured on)."""
        return {
            "ce": alpha * self.ce, "kl": (1 - alpha) * self.kl, "hidden": hidden_weight * self.hidden,
            "cross_layers": hidden_weight * self.cross_layers, "input_layer": hidden_weight * self.input_layer,
            "attention": attention_weight * self.attention,
        }  # fmt: skip


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE with the labels, T^2-scaled KL to the teacher's softened distribution), over the last axis.

    student, teacher: (B, C) logits; labels: (B,) class (or slot) indices, NO_LABEL where there is none
    (CE is the mean over the labelled rows, 0 when a batch has none; the KL covers every row).
    """
    ce = labelled_ce(student, labels)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    p_teacher = F.softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2
    return ce, kl


def labelled_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the rows that have a label (NO_LABEL rows skipped; 0 if none has one)."""
    total = F.cross_entropy(logits, labels, ignore_index=NO_LABEL, reduction="sum")
    return total / (labels != NO_LABEL).sum().clamp(min=1)


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real tokens: (B, S, D) states, (B, S) 0/1 mask."""
    m = mask.to(student.dtype)[..., None]  # (B, S, 1)
    return ((student - teacher) ** 2 * m).sum() / (m.sum() * student.shape[-1]).clamp(min=1)


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of attention maps between real query rows and real key columns.

    student, teacher: (B, H, S, S) scores (or probabilities); mask: (B, S).
    """
    m = mask.to(student.dtype)
    pair = (m[:, None, :, None] * m[:, None, None, :]).expand_as(student)  # (B, H, S, S)
    return ((student - teacher) ** 2 * pair).sum() / pair.sum().clamp(min=1)


StatePair = tuple[torch.Tensor, torch.Tensor]  # (student, teacher) states or maps of one layer


def distillation_loss(
    student_out: tuple[torch.Tensor, ...],
    teacher_out: tuple[torch.Tensor, ...],
    labels: tuple[torch.Tensor, ...],
    slots: torch.Tensor | None,
    hidden: StatePair | None,
    attention: StatePair | None,
    mask: torch.Tensor,
    temperature: float,
    alpha: float,
    hidden_weight: float = 0.5,
    attention_weight: float = 0.5,
    cross_layers: Sequence[StatePair] = (),
    input_layer: StatePair | None = None,
) -> LossTerms:
    """The whole loss. QA: outputs are (start, end) over slots, `slots` (B, S) marks real slots and
    both distributions are averaged; pair tasks: one (B, C) output and `slots` None.

    `hidden`/`attention`: the last layer's states and attention maps, or None when the student has
    no such layer; `cross_layers`: the intermediate cross layers' states (empty: term off);
    `input_layer`: the states entering the cross layers against the teacher's after N layers.
    """
    ces, kls = [], []
    for s, t, y in zip(student_out, teacher_out, labels):
        if slots is not None:  # QA: a distribution over slots, where padding can never win
            s = s.masked_fill(~slots.bool(), MASKED)
            t = t.masked_fill(~slots.bool(), MASKED)
        ce, kl = kd_loss(s, t, y, temperature)
        ces.append(ce)
        kls.append(kl)
    ce, kl = torch.stack(ces).mean(), torch.stack(kls).mean()
    zero = ce.new_zeros(())
    h = masked_mse(*hidden, mask) if hidden is not None else zero
    a = attention_mse(*attention, mask) if attention is not None else zero
    mid = torch.stack([masked_mse(s, t, mask) for s, t in cross_layers]).mean() if cross_layers else zero
    inp = masked_mse(*input_layer, mask) if input_layer is not None else zero
    terms = LossTerms(zero, ce, kl, h, a, mid, inp)
    terms.total = sum(terms.weighted(alpha, hidden_weight, attention_weight).values())
    return terms
