"""Backends and tasks are chosen by objects, not by spelling their names.

A backend is one object in dtx/engines/backends.py (check, compile, load, describe), a task is the
`Task` enum in dtx/task.py; anywhere else, comparing a string against "ort" or "qa" is a new place a
new backend or task would have to be taught - the grep below refuses it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dtx

NAMES = r"(?:qa|pair|ort|trt|torch|aoti)"
COMPARISON = re.compile(
    rf"""(?:==|!=)\s*["']{NAMES}["']"""  # x == "ort"
    rf"""|["']{NAMES}["']\s*(?:==|!=)"""  # "ort" == x
    rf"""|\bin\s*[(\[{{]\s*(?:["']\w+["']\s*,\s*)*["']{NAMES}["']"""  # x in ("torch", "aoti")
)
OWNERS = {"task.py", "engines/backends.py"}  # the enum and the registry: where the names are parsed


def _sources(root: Path) -> list[tuple[str, str]]:
    """(path relative to `root`, text) of every Python file under it."""
    return [(path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.py"))]


def _comparisons(root: Path) -> list[str]:
    found = []
    for rel, text in _sources(root):
        if rel in OWNERS:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if COMPARISON.search(line.split("#", 1)[0]):
                found.append(f"dtx/{rel}:{i}: {line.strip()[:120]}")
    return found


def test_no_string_comparison_of_a_backend_or_task_name():
    found = _comparisons(Path(dtx.__file__).parent)
    assert not found, "compare Task members or ask the backend registry instead:\n" + "\n".join(found)


def test_the_grep_sees_each_form(tmp_path):
    bad = ['if b == "ort":', "if 'qa' != task:", 'x = b in ("torch", "aoti")', 'ok = k in ["trt"]', 'y = t == "pair" and z']
    good = ['if task == Task.QA:', 'name = "ort"', 'logging.getLogger("torch")', 'if b in BACKENDS:', '# if b == "ort" in a comment']
    (tmp_path / "m.py").write_text("\n".join(bad + good) + "\n")
    assert len(_comparisons(tmp_path)) == len(bad)


MAX_LINES = 60  # a longer function says why in its docstring ("long because ...")


def _long_functions(root: Path) -> list[str]:
    functions = [(rel, f) for rel, text in _sources(root) for f in ast.walk(ast.parse(text)) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    length = lambda f: f.end_lineno - f.lineno + 1  # noqa: E731
    unexplained = [(rel, f) for rel, f in functions if length(f) > MAX_LINES and "long because" not in (ast.get_docstring(f) or "").lower()]
    return [f"{rel}:{f.lineno} {f.name} ({length(f)} lines)" for rel, f in unexplained]


def test_no_function_over_60_lines_without_its_reason():
    found = _long_functions(Path(dtx.__file__).parent)
    assert not found, "split these, or say in the docstring why they are long ('long because ...'):\n" + "\n".join(found)


def test_the_length_check_sees_a_long_function_and_its_reason(tmp_path):
    body = "".join(f"    x{n} = {n}\n" for n in range(MAX_LINES))
    (tmp_path / "a.py").write_text(f"def long():\n{body}\n\ndef explained():\n    \"\"\"Long because one table.\"\"\"\n{body}")
    assert _long_functions(tmp_path) == ["a.py:1 long (61 lines)"]
