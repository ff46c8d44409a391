"""Write artifacts so that a crash or Ctrl-C never leaves a half-written one behind.

Every artifact directory (checkpoint, export, engine) is built in a sibling temp directory and
renamed into place only once complete; single files go through a temp file + `os.replace`.
A later command therefore either sees the old artifact or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Iterator

from dtx.errors import DtxError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB weights do not need to fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_permissions(root: Path) -> None:
    """Give temp-created files the modes a plain write would (mkstemp/mkdtemp use 0600/0700)."""
    mask = _umask()
    for p in [root, *root.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def read_artifact_json(directory: str | os.PathLike, filename: str, what: str, fix: str, error: type[DtxError] = DtxError) -> dict:
    """`directory/filename` parsed, or one line saying which of dir / file / JSON is wrong and `fix`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise error(f"{what} {directory} does not exist; {fix}")
    path = directory / filename
    if not path.is_file():
        raise error(f"{directory} is not a {what} (no {filename}); {fix}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e}); {fix}") from None


def artifact_field(mapping: Any, key: str, kind: type | tuple[type, ...], at: str = "", *, where: Path, fix: str, error: type[DtxError] = DtxError) -> Any:
    """`mapping[key]` of an artifact's JSON if it is a `kind` (a bool is no int), else one line naming the
    file and the field (`at` prefixes nested ones: "model.")."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise error(f"{where} has no valid {at}{key}; {fix}")
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete the temp directories that killed writers of `target` left behind (their process is gone).

    A temp directory is named `.{target}.{pid}.{random}.tmp`; one whose pid still runs belongs to
    a writer at work and is left alone. Returns what was removed.
    """
    removed = []
    for p in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        middle = p.name[len(target.name) + 2 : -len(".tmp")].split(".")  # [pid, random] for a temp of exactly this target
        if p.is_dir() and len(middle) == 2 and middle[0].isdigit() and not _alive(int(middle[0])):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of directory dtx writes (checkpoint, export, engine, fine-tuned teacher) and how to recognise one.

    A directory is dtx's own `name` when it holds `marker`; its own files are the marker, the files
    the marker's JSON lists under "files" (exports and engines record every file they hold), and
    those matching `patterns` (fnmatch on the path inside the directory; `*` crosses `/`).
    """

    name: str
    marker: str
    patterns: tuple[str, ...] = ()

    def holds_one(self, directory: Path) -> bool:
        return (directory / self.marker).is_file()

    def foreign_files(self, directory: Path) -> list[str]:
        """Files in `directory` that are not this artifact's own (what replacing it would lose)."""
        listed: set[str] = set()
        try:
            data = json.loads((directory / self.marker).read_text())
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                listed = set(data["files"])
        except (OSError, ValueError):
            pass
        foreign = []
        for p in sorted(directory.rglob("*")):
            if p.is_dir() and not p.is_symlink():
                continue
            rel = p.relative_to(directory).as_posix()
            if rel != self.marker and rel not in listed and not any(fnmatchcase(rel, pat) for pat in self.patterns):
                foreign.append(rel)
        return foreign


def check_writable(path: str | os.PathLike, option: str = "-o") -> None:
    """`path` can be created (or written into, if it is a directory): its nearest existing ancestor is a
    directory this process can create entries in, tried for real (permission bits say nothing for root
    or a read-only mount). A one-line error naming `option` otherwise, before any work."""
    path = Path(path)
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DtxError(f"cannot write {path}: {probe} is a file, not a directory (an existing file is never replaced); choose another {option}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dtx-write-probe.", dir=probe))
    except OSError as e:
        raise DtxError(f"cannot write {path}: {probe} is not writable ({e.strerror}); choose another {option}") from None


def check_output(target: str | os.PathLike, kind: ArtifactKind, overwrite: bool = False, option: str = "-o") -> Path:
    """The one rule of every verb that writes an artifact directory, checked before any work (and again by
    `atomic_dir` just before its swap): a missing or empty `target` is written; an existing one is replaced
    only when it is dtx's own `kind` holding nothing but that artifact's files, and only with `overwrite`.
    Anything else - a file, a user's directory, an artifact with the user's files beside it - is refused in
    one line, so nothing a user made is ever deleted. The place must also be writable."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise DtxError(f"{target} is a file, not a directory (an existing file is never replaced); choose another {option}")
        if any(target.iterdir()):
            if not kind.holds_one(target):
                raise DtxError(f"{target} exists and is not a dtx {kind.name} (dtx replaces only its own); choose another {option}")
            foreign = kind.foreign_files(target)
            if foreign:
                more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
                raise DtxError(f"{target} also holds files that are not part of its {kind.name} ({', '.join(foreign[:3])}{more}); move them or choose another {option}")
            if not overwrite:
                raise DtxError(f"{target} already exists (a dtx {kind.name}); pass --overwrite to replace it, or choose another {option}")
    check_writable(target.parent if target.exists() else target, option)
    return target


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False, kind: ArtifactKind | None = None) -> Iterator[Path]:
    """Yield a fresh temp directory that replaces `target` only if the block completes.

    An existing `target` is replaced only under `check_output`'s rule for `kind` (checked before the
    block and again before the swap, which catches files added meanwhile); without a `kind`, only a
    missing or empty one is. The old directory is swapped out and deleted only after the new one is in
    place.
    """
    target = Path(target)

    def check() -> None:
        if kind is not None:
            check_output(target, kind, overwrite)
        elif target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DtxError(f"{target} already exists; choose another output directory")

    check()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        check()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_permissions(tmp)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
