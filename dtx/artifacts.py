"""Which dtx artifact a directory holds, and finding the one a verb needs when none is named.

Every artifact carries its own marker file (checkpoint: decoupled.json, export: manifest.json,
engine: engine.json), so a directory says what it is. The design card's commands name only the
first input - `dtx export ckpt/`, then `dtx build-engine --int8`, then `dtx bench --seq-q 32
--seq-p 150` - so each later verb looks in the working directory for the one artifact of the kind
it reads: exactly one is used, none or several is a one-line error naming the fix.
"""

from __future__ import annotations

from pathlib import Path

from dtx.engines.manifest import ENGINE_FILE
from dtx.errors import DtxError
from dtx.export.manifest import MANIFEST_FILE
from dtx.model.checkpoint import META_FILE

MARKERS = {"engine": ENGINE_FILE, "export": MANIFEST_FILE, "checkpoint": META_FILE}
MAKE = {
    "engine": "build one with `dtx build-engine [EXPORT_DIR]`",
    "export": "make one with `dtx export CKPT_DIR`",
    "checkpoint": "make one with `dtx decouple MODEL_DIR --split N -o CKPT_DIR`",
}


def artifact_kind(path: str | Path) -> str | None:
    """"engine", "export" or "checkpoint" for a dtx artifact directory, else None."""
    path = Path(path)
    return next((kind for kind, marker in MARKERS.items() if (path / marker).is_file()), None)


def target_kind(target: str | Path) -> str:
    """The kind of a directory a verb was pointed at; anything else is a one-line error."""
    kind = artifact_kind(target)
    if kind is None:
        raise DtxError(f"{target} is not an engine, export or checkpoint directory; pass one of those or use --arch PRESET")
    return kind


def find_artifact(kind: str, where: str | Path = ".") -> Path:
    """The one `kind` artifact directly inside `where` (the working directory by default)."""
    where = Path(where)
    found = sorted(d for d in where.iterdir() if d.is_dir() and artifact_kind(d) == kind)
    if len(found) == 1:
        return found[0]
    here = "this directory" if where == Path(".") else str(where)
    if not found:
        raise DtxError(f"no dtx {kind} in {here}: {MAKE[kind]}, or name one")
    raise DtxError(f"several dtx {kind}s in {here} ({', '.join(d.name for d in found)}): name the one to use")
