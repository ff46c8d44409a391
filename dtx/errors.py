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
