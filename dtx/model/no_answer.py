"""A QA reader's calibrated "no answer" thresholds, as a checkpoint records them and every reader of it answers by.

A reader answers where its best span's score (start + end logit) minus its no-answer ([CLS]) score
exceeds a threshold; 0 is the uncalibrated rule. `dtx distill` (or `dtx calibrate`) chooses one per
reader - the decoupled student and the coupled teacher of the checkpoint - and per condition:
`paragraph` (the question with its own paragraph, as `dtx eval` reads) and `retrieved` (BM25's top k
paragraphs, as `dtx eval-store`, `dtx answer` and the server read a store). How they are chosen:
dtx.eval.no_answer. The record travels decoupled.json -> the export manifest -> its engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

NO_ANSWER = "no_answer"  # decoupled.json key
CONDITIONS = ("paragraph", "retrieved")
READERS = {"student": "decoupled", "teacher": "coupled"}  # each reader's path through a checkpoint, export or engine
PATHS = tuple(READERS.values())
RETRIEVED_K = 20  # candidates per question when calibrating `retrieved`: what eval-store and the recipe read


@dataclass(frozen=True)
class NoAnswer:
    """A checkpoint's calibrated thresholds by condition and path, and what they were chosen on.

    `thresholds[condition][path]`; a condition or path not calibrated reads 0 (the uncalibrated rule)."""

    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    k: int | None = None  # candidates per question of the `retrieved` condition
    questions: int = 0  # selection questions chosen on
    paragraphs: int = 0  # BM25's pool for `retrieved`
    selection_f1: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)  # condition -> path -> {"at_0", "calibrated"}

    def threshold(self, condition: str, path: str) -> float:
        """The threshold `path` ("decoupled" or "coupled") answers by in `condition` ("paragraph" or "retrieved")."""
        return float(self.thresholds.get(condition, {}).get(path, 0.0))

    @property
    def calibrated(self) -> bool:
        return bool(self.thresholds)

    def to_dict(self) -> dict:
        return {"thresholds": {c: dict(t) for c, t in self.thresholds.items()}, "k": self.k, "questions": self.questions, "paragraphs": self.paragraphs,
                "selection_f1": {c: {p: dict(v) for p, v in by.items()} for c, by in self.selection_f1.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "NoAnswer":
        """From decoupled.json / a manifest; None (made before calibration existed) is the uncalibrated rule."""
        if not data:
            return cls()
        return cls({c: {p: float(v) for p, v in t.items()} for c, t in data.get("thresholds", {}).items()}, data.get("k"),
                   int(data.get("questions", 0)), int(data.get("paragraphs", 0)), data.get("selection_f1", {}))  # fmt: skip
