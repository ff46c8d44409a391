"""Read (question, passage) pairs from the formats users have, with a label where there is one.

Formats, recognised by content rather than file name:
- BIG-bench task JSON (optionally .gz): Disfl-QA (`"<question> \\ncontext: <paragraph>"`, answer
  target) and VitaminC (`"<title>: <evidence>\\nClaim: <claim>"`, True/False/Neither); the
  claim is the query side and the evidence the cached passage side;
- SQuAD 1.1 / 2.0 JSON (`data[].paragraphs[].qas[]`; `is_impossible` or no answers = no answer);
- JSON lines with `question` + `passage` (or `query` + `text`), optional `label` / `answers`;
- re-ranking JSON lines `{"query", "positive", "negatives": [...]}`: one pair per passage,
  label "1" / "0", grouped by query (for MRR@10);
- TSV `question<TAB>passage[<TAB>label]`.
Every problem names the file and line.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from dtx.errors import DtxError


@dataclass
class Pair:
    question: str
    passage: str
    label: str | None = None  # class name for pair tasks
    answers: list[str] = field(default_factory=list)  # answer texts for QA; empty = no answer
    id: str = ""
    answer_start: int | None = None  # character offset of answers[0] where the data gives it
    group: str = ""  # re-ranking: pairs of one query share a group


def _squad(path: Path, doc: dict) -> list[Pair]:
    pairs = []
    for a, article in enumerate(doc.get("data", [])):
        for p, para in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = para.get("context")
            if not isinstance(context, str) or not context.strip():
                raise DtxError(f"{where} has no 'context' text")
            for q, qa in enumerate(para.get("qas", [])):
                if not isinstance(qa.get("question"), str):
                    raise DtxError(f"{where}.qas[{q}] has no 'question'")
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                if any(not isinstance(x, dict) or "text" not in x for x in answers):
                    raise DtxError(f"{where}.qas[{q}]: every answer needs a 'text' (and 'answer_start')")
                texts = [x["text"] for x in answers]
                start = answers[0].get("answer_start") if answers else None
                pairs.append(Pair(qa["question"], context, None, texts, str(qa.get("id", f"{a}-{p}-{q}")), start))
    return pairs


def read_text(path: Path) -> str:
    """A user's data file as text: gzip or not, UTF-8 with or without a byte-order mark (editors on Windows
    write one; kept, it would hide the first line's `{`). Every data reader (pairs, corpora, calibration) reads through here."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8-sig")
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


def json_lines(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is an error naming it."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DtxError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DtxError(f"{path}:{n}: expected a JSON object per line")
        yield n, row


def tsv_lines(path: Path, text: str, at_most: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, columns) for every non-blank line, split on at most `at_most` tabs (-1: all)."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield n, line.split("\t", at_most)


def _jsonl(path: Path, text: str) -> list[Pair]:
    pairs = []
    for n, row in json_lines(path, text):
        question = row.get("question", row.get("query"))
        if "positive" in row:  # re-ranking: query, positive, negatives
            passages = [row["positive"], *row.get("negatives", [])]
            if not isinstance(question, str) or not all(isinstance(x, str) and x.strip() for x in passages):
                raise DtxError(f"{path}:{n}: a re-ranking line needs 'query', a non-empty 'positive' and a list of 'negatives'")
            pairs += [Pair(question, x, "1" if i == 0 else "0", [], f"{n}-{i}", group=str(row.get("id", n))) for i, x in enumerate(passages)]
            continue
        passage = row.get("passage", row.get("text", row.get("context")))
        if not isinstance(question, str) or not isinstance(passage, str) or not passage.strip():
            raise DtxError(f"{path}:{n}: needs string fields 'question' and 'passage' (or 'query' and 'text')")
        label = row.get("label")
        answers = row.get("answers", [])
        if not isinstance(answers, list) or any(not isinstance(x, str) for x in answers):
            raise DtxError(f"{path}:{n}: 'answers' must be a list of strings")
        pairs.append(Pair(question, passage, None if label is None else str(label), answers, str(row.get("id", n))))
    return pairs


def _tsv(path: Path, text: str) -> list[Pair]:
    pairs = []
    for n, cols in tsv_lines(path, text, -1):
        if len(cols) < 2 or not cols[1].strip():
            raise DtxError(f"{path}:{n}: expected question<TAB>passage[<TAB>label]")
        pairs.append(Pair(cols[0], cols[1], cols[2].strip() if len(cols) > 2 else None, [], str(n)))
    return pairs


def whole_json(text: str) -> object:
    """The file as one JSON document, or None when it is JSON lines / TSV."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def read_document(path: Path, what: str) -> tuple[str, object]:
    """The text of `path` and, when the whole file is one JSON document, that document (else None)."""
    if not path.is_file():
        raise DtxError(f"{path} does not exist; pass a JSONL, TSV, SQuAD JSON or BIG-bench task file")
    text = read_text(path)
    if not text.strip():
        raise DtxError(f"{path} is empty; it holds no {what}")
    return text, whole_json(text) if text.lstrip().startswith("{") else None


def read_pairs(path: str | Path, limit: int | None = None) -> list[Pair]:
    """All pairs in `path` (first `limit`), or a one-line error naming the file and line."""
    path = Path(path)
    text, doc = read_document(path, "pairs")
    if isinstance(doc, dict) and "examples" in doc:
        pairs = _bigbench(path, doc)
    elif isinstance(doc, dict) and isinstance(doc.get("data"), list):
        pairs = _squad(path, doc)
    else:
        pairs = _jsonl(path, text) if text.lstrip().startswith("{") else _tsv(path, text)
    if not pairs:
        raise DtxError(f"{path} holds no pairs")
    return pairs[:limit] if limit else pairs
