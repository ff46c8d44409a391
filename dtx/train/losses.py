"""The distillation loss (docs/design.md, "Training"), term by term.

    loss = KD(logits) + 0.5 * (MSE(last hidden) + MSE(last attention))
    KD   = a * CE(student, labels) + (1 - a) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Student and teacher see the same slot layout (see `dtx.train.distill`), so every term is an
elementwise comparison restricted to real slots by a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASKED = -1e4  # logits of slots that can never be an answer (padding) in QA distributions


@dataclass
class LossTerms:
    total: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor
    hidden: torch.Tensor
    attention: torch.Tensor

    def items(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE with the labels, T^2-scaled KL to the teacher's softened distribution), over the last axis.

    student, teacher: (B, C) logits; labels: (B,) class (or slot) indices.
    """
    ce = F.cross_entropy(student, labels)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    p_teacher = F.softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2
    return ce, kl


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real tokens: (B, S, D) states, (B, S) 0/1 mask."""
    m = mask.to(student.dtype)[..., None]  # (B, S, 1)
    return ((student - teacher) ** 2 * m).sum() / (m.sum() * student.shape[-1]).clamp(min=1)


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of attention probabilities between real query rows and real key columns.

    student, teacher: (B, H, S, S); mask: (B, S).
    """
    m = mask.to(student.dtype)
    pair = (m[:, None, :, None] * m[:, None, None, :]).expand_as(student)  # (B, H, S, S)
    return ((student - teacher) ** 2 * pair).sum() / pair.sum().clamp(min=1)


def distillation_loss(
    student_out: tuple[torch.Tensor, ...],
    teacher_out: tuple[torch.Tensor, ...],
    labels: tuple[torch.Tensor, ...],
    slots: torch.Tensor | None,
    hidden: tuple[torch.Tensor, torch.Tensor] | None,
    attention: tuple[torch.Tensor, torch.Tensor] | None,
    mask: torch.Tensor,
    temperature: float,
    alpha: float,
) -> LossTerms:
    """The whole loss. QA: outputs are (start, end) over slots, `slots` (B, S) marks real slots and
    both distributions are averaged; pair tasks: one (B, C) output and `slots` None. `hidden`/`attention` are
    (student, teacher) pairs of the last layer, or None when the student has no such layer."""
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
    total = alpha * ce + (1 - alpha) * kl + 0.5 * (h + a)
    return LossTerms(total, ce, kl, h, a)
