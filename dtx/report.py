"""Terminal tables and JSON reports, shared by every command that prints results."""

from __future__ import annotations

from typing import Any, Sequence

import click

from dtx.atomic import write_json


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text table with a rule under the header."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def emit(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    click.echo(title)
    click.echo(format_table(headers, rows))
    click.echo()


def save_json(path: str | None, data: dict) -> None:
    if path:
        write_json(path, data)
        click.echo(f"wrote {path}")


def save_figure(fig, path: str) -> None:
    """Lay out, write (120 dpi PNG) and release a matplotlib figure: every dtx plot ends this way."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
