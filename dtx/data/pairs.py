"""Read (question, passage) pairs from the formats users have, with a label where there is one.

Formats, recognised by content rather than file name:
- BIG-bench task JSON (optionally .gz): Disfl-QA (`"<question> \\ncontext: <paragraph>"`, answer
  target) and VitaminC (`"<title>: <evidence>\\nClaim: <claim>"`, True/False/Neither); the
  claim is the query side and the evidence the cached passage side;
- JSON lines with `question` + `passage` (or `query` + `text`), optional `label` / `answers`;
- TSV `question<TAB>passage[<TAB>label]`.
Every problem names the file and line.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from dtx.errors import DtxError


@dataclass
class Pair:
    question: str
    passage: str
    label: str | None = None  # class name for pair tasks
    answers: list[str] = field(default_factory=list)  # answer texts for QA; empty = no answer
    id: str = ""


def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DtxError(f"{path} is not UTF-8 text ({e}); convert it first") from None


def _bigbench(path: Path, task: dict) -> list[Pair]:
    name = task.get("name", "")
    pairs = []
    for i, ex in enumerate(task.get("examples", [])):
        text = ex.get("input", "")
        if "\ncontext:" in text:  # Disfl-QA
            question, passage = text.split("\ncontext:", 1)
            target = ex.get("target", "")
            target = target[0] if isinstance(target, list) else target
            answers = [] if target == "unknown" else [target]
            pairs.append(Pair(question.strip(), passage.strip(), None, answers, f"{name}-{i}"))
        elif "\nClaim:" in text:  # VitaminC
            evidence, claim = text.split("\nClaim:", 1)
            scores = ex.get("target_scores", {})
            label = max(scores, key=scores.get) if scores else None
            pairs.append(Pair(claim.strip(), evidence.strip(), label, [], f"{name}-{i}"))
        else:
            raise DtxError(f"{path}: example {i} of BIG-bench task {name!r} is neither Disfl-QA nor VitaminC shaped")
    return pairs


def _jsonl(path: Path, text: str) -> list[Pair]:
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DtxError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        question = row.get("question", row.get("query"))
        passage = row.get("passage", row.get("text", row.get("context")))
        if not isinstance(question, str) or not isinstance(passage, str) or not passage.strip():
            raise DtxError(f"{path}:{n}: needs string fields 'question' and 'passage' (or 'query' and 'text')")
        label = row.get("label")
        pairs.append(Pair(question, passage, None if label is None else str(label), list(row.get("answers", [])), str(row.get("id", n))))
    return pairs


def _tsv(path: Path, text: str) -> list[Pair]:
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[1].strip():
            raise DtxError(f"{path}:{n}: expected question<TAB>passage[<TAB>label]")
        pairs.append(Pair(cols[0], cols[1], cols[2].strip() if len(cols) > 2 else None, [], str(n)))
    return pairs


def read_pairs(path: str | Path, limit: int | None = None) -> list[Pair]:
    """All pairs in `path` (first `limit`), or a one-line error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DtxError(f"{path} does not exist; pass a JSONL, TSV or BIG-bench task file")
    text = _open_text(path)
    if not text.strip():
        raise DtxError(f"{path} is empty")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"examples"' in text[:1_000_000] and "\n{" not in stripped[:2]:
        try:
            task = json.loads(text)
        except json.JSONDecodeError:
            task = None
        if isinstance(task, dict) and "examples" in task:
            pairs = _bigbench(path, task)
            return pairs[:limit] if limit else pairs
    pairs = _jsonl(path, text) if stripped.startswith("{") else _tsv(path, text)
    return pairs[:limit] if limit else pairs
