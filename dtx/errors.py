"""One exception family for everything a user can get wrong.

The CLI prints a `DtxError` as a single line and exits 1; anything else is a bug and keeps its
traceback. Messages name the problem and the fix, e.g. "... is missing model.safetensors;
re-run `dtx decouple`".
"""


class DtxError(Exception):
    """A problem with the user's input, files or environment (not a bug in dtx)."""


class CheckpointError(DtxError):
    """A decoupled checkpoint directory is missing, corrupted or inconsistent."""


class ConfigError(DtxError):
    """A requested split, compression, task or length that the model cannot take."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of `exc`'s message, cut to `limit` characters (its type's name when it says
    nothing): how a library's multi-line error (ONNX Runtime, Lance, Ray) enters a one-line dtx message."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0].strip()[:limit] if lines else type(exc).__name__
