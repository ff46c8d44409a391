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


def read_index_rate(path: str) -> float:
    """Passages/s of indexing from a `dtx index --json` or `dtx bench --json` report (what `dtx plan --bench-json` reads)."""
    import json
    from pathlib import Path

    from dtx.errors import ConfigError

    try:
        report = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        return report["passages_per_s"] if "passages_per_s" in report else 1e3 / report["rows"][0]["index_ms_per_passage"]
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        raise ConfigError(f"--bench-json {path} is not a `dtx index --json` or `dtx bench --json` report; pass one of those, or --index-rate") from None
