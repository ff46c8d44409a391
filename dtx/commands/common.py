"""What the command modules share: option types and callbacks, and quieting the libraries they call."""

from __future__ import annotations

from pathlib import Path

import click

from dtx.errors import DtxError


class OutputFile(click.Path):
    """A file a command will write: its directory must exist now, not after an hour of work."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        parent = Path(value).parent
        if not parent.is_dir():
            self.fail(f"{value}: directory {parent} does not exist; create it first", param, ctx)
        from dtx.atomic import check_writable

        try:
            check_writable(parent)  # tried for real: permission bits say nothing for root or a read-only mount
        except DtxError:
            self.fail(f"{value}: directory {parent} is not writable", param, ctx)
        return value


OUTPUT_FILE = OutputFile()


def check_store_writable(uri: str, option: str) -> None:
    """A local store is written in place (commits append): its place must be writable before any work."""
    from dtx.atomic import check_writable
    from dtx.store.passage_store import local_path

    if (local := local_path(uri)) is not None:
        check_writable(local, option)


def quiet_transformers() -> None:
    """Hugging Face's warnings and progress bars off: a command prints its own lines."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def int_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not values:  # "," or "": an empty list given is never "the default"
        raise click.BadParameter(f"{value!r} holds no integer; pass e.g. 1,2,3")
    return values
