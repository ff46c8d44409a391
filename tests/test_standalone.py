"""The project stands alone: nothing a user reads or runs cites a directory beside the repository.

The design is docs/design.md and the data comes from scripts/get_data.sh, so dtx/, docs/*.md,
scripts/ and README.md must not point at `../shared` or at a DESIGN.md outside the project.
docs/results/ is exempt: its JSON files record the commands that were run, as they were run.
(tests/ is exempt too: tests may read ../shared/data when it is present.)
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(r"\.\./shared|DESIGN\.md")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".html", ".txt", ".toml", ".json", ".yaml", ".yml", ".cfg", ""}


def _files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for top in ("dtx", "scripts"):
        files += sorted(
            p
            for p in (REPO / top).rglob("*")
            if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts
        )
    return files


def test_nothing_cites_shared_or_design_md():
    files = _files()
    assert any(p.name == "design.md" for p in files) and any(p.name == "cost.py" for p in files)
    found = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()[:100]}"
        for p in files
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not found, "cite docs/design.md and data/ (scripts/get_data.sh) instead:\n" + "\n".join(found)


def test_get_data_script_is_the_documented_command():
    script = REPO / "scripts" / "get_data.sh"
    assert script.is_file()
    assert "bash scripts/get_data.sh" in (REPO / "README.md").read_text(encoding="utf-8")
    text = script.read_text(encoding="utf-8")
    for name in ("disfl_qa.task.json.gz", "vitaminc.task.json.gz", "bigbench==1.0.0"):
        assert name in text
