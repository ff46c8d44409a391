"""The package layout is the pipeline: no module imports from a package above its own.

Function-local imports count too (they are how upward dependencies used to hide). The order, low to
high: shared utilities; the model (architecture, surgery, windows); data readers; ONNX export;
engines (build and run); artifact detection; evaluation (metrics, prediction); training (which
scores with evaluation); the passage store; query pipelines; the HTTP service; the bench; the CLI on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dtx

ORDER = ["errors", "atomic", "cost", "report", "task", "model", "data", "export", "engines", "artifacts", "eval", "train", "store", "query", "serve", "bench", "cli"]
BASE = {"errors", "atomic", "cost", "report", "task"}  # utilities any layer may use (and that use only each other)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(top-level dtx package or module imported, line) for every import in the file, wherever it is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "dtx":
                found.append((parts[1] if len(parts) > 1 else "__init__", node.lineno))
    return found


def test_no_module_imports_upward():
    root = Path(dtx.__file__).parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        own = rel.parts[0].removesuffix(".py")
        assert own == "__init__" or own in ORDER, f"{rel}: place the new package {own!r} in ORDER"
        for target, line in _imports(path):
            if target == own or "__init__" in (own, target):  # the package facade: `dtx.load` (lazy) and `__version__`
                continue
            if ORDER.index(target) > ORDER.index(own) and not (own in BASE and target in BASE):
                upward.append(f"{rel}:{line} imports dtx.{target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_check_sees_a_function_local_upward_import(tmp_path):
    """The walker finds imports inside functions, where upward ones used to hide."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from dtx.bench.run import run_bench\n    import dtx.train.sweep\n")
    assert _imports(f) == [("bench", 2), ("train", 3)]
