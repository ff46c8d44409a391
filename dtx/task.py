"""The task a model's head does, named once: every comparison of a task goes through this enum."""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    """What a model's head does; a str, so JSON and manifests keep the plain name ("qa", "pair")."""

    QA = "qa"  # extractive reader: start/end logits, SQuAD 2.0 no-answer at token 0
    PAIR = "pair"  # classifier over (question, passage) labels


TASKS = tuple(t.value for t in Task)
