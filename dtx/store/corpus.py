"""Read the passages to index: JSONL, TSV, SQuAD JSON, or the passages of a BIG-bench pair task.

- JSON lines: `{"id": ..., "text": ...}` (`passage`, `contents` or `context` also name the text);
- TSV: `id<TAB>text`;
- SQuAD 1.1/2.0 JSON: every paragraph's `context`;
- BIG-bench Disfl-QA / VitaminC task JSON: every distinct passage of its pairs.
Formats without ids (SQuAD, BIG-bench) get a content id (`p` + 16 hex of the text's sha256), so
the same paragraph asked about many times is indexed once and re-indexing finds the same ids.
A line without text or an id given twice is a one-line error naming the file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dtx.data.pairs import json_lines, read_document, read_pairs, tsv_lines
from dtx.data.splits import SPLITS, is_dev
from dtx.errors import DtxError

TEXT_FIELDS = ("text", "passage", "contents", "context")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str


def content_id(text: str) -> str:
    return "p" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _unique(passages: list[tuple[str, str, str]]) -> list[Passage]:
    """(id, text, where) -> passages, refusing an id given twice."""
    seen: dict[str, str] = {}
    out = []
    for pid, text, where in passages:
        if pid in seen:
            raise DtxError(f"{where}: passage id {pid!r} was already given at {seen[pid]}; ids must be unique")
        seen[pid] = where
        out.append(Passage(pid, text))
    return out


def _jsonl(path: Path, text: str) -> list[Passage]:
    rows = []
    for n, row in json_lines(path, text):
        body = next((row[f] for f in TEXT_FIELDS if f in row), None)
        if not isinstance(body, str) or not body.strip():
            raise DtxError(f"{path}:{n}: no passage text; give a non-empty 'text' field")
        pid = row.get("id", row.get("_id"))
        rows.append((str(pid) if pid is not None else content_id(body), body, f"{path}:{n}"))
    return _unique(rows)


def _tsv(path: Path, text: str) -> list[Passage]:
    rows = []
    for n, cols in tsv_lines(path, text, 1):
        if len(cols) < 2 or not cols[1].strip():
            raise DtxError(f"{path}:{n}: no passage text; expected id<TAB>text")
        rows.append((cols[0].strip(), cols[1].strip(), f"{path}:{n}"))
    return _unique(rows)


def _squad(path: Path, doc: dict) -> list[Passage]:
    out: dict[str, Passage] = {}
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            body = para.get("context")
            if not isinstance(body, str) or not body.strip():
                raise DtxError(f"{path}: data[{a}].paragraphs[{p}] has no context text")
            out.setdefault(content_id(body), Passage(content_id(body), body))
    return list(out.values())


def read_corpus(path: str | Path, limit: int | None = None, split: str = "all") -> list[Passage]:
    """Every passage in `path` (the first `limit`), in file order.

    `split` "dev" / "train" keeps only the passages training held out / trained on (the same hash
    of the passage text that `dtx finetune` and `dtx distill` split by), so a store of the dev
    paragraphs evaluates retrieval + reading on text no model has seen.
    """
    path = Path(path)
    text, doc = read_document(path, "passages to index")
    passages: list[Passage]
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        passages = _squad(path, doc)
    elif isinstance(doc, dict) and "examples" in doc:
        unique: dict[str, Passage] = {}
        for pair in read_pairs(path):
            unique.setdefault(content_id(pair.passage), Passage(content_id(pair.passage), pair.passage))
        passages = list(unique.values())
    elif text.lstrip().startswith("{"):
        passages = _jsonl(path, text)
    else:
        passages = _tsv(path, text)
    if split not in SPLITS:
        raise DtxError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if split != "all":
        passages = [p for p in passages if is_dev(p.text) == (split == "dev")]
    return passages[:limit] if limit else passages
