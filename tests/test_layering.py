"""The package layout is the pipeline: no module imports from a package above its own.

Function-local imports count too (they are how upward dependencies used to hide). The order, low to
high: shared utilities; the model (architecture, surgery, windows); data readers; ONNX export;
engines (build and run); artifact detection; evaluation (metrics, prediction); training (which
scores with evaluation); the passage store; query pipelines; the HTTP service; the bench; the commands and the CLI that assembles them on top.

Inside one package there is no circle either: no module imports (at the top or inside a function) a
module of its own package that imports it back, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dtx

ORDER = ["errors", "atomic", "cost", "report", "task", "model", "data", "export", "engines", "artifacts", "eval", "train", "store", "query", "serve", "bench", "commands", "cli"]
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


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The dtx modules `path` imports, wherever the import is: `from dtx.p import sub` names the submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs or ({node.module} & modules)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & modules
    return found


def _circles(root: Path) -> list[str]:
    """Every import circle among the modules of one package under `root` (each named once, from its smallest module)."""
    paths = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    package = lambda m: m.rsplit(".", 1)[0] if m in paths and not paths[m].name == "__init__.py" else m  # noqa: E731
    edges = {m: {n for n in _module_imports(p, set(paths)) if n != m and package(n) == package(m)} for m, p in paths.items()}
    circles = set()
    for start in paths:
        stack = [(start, (start,))]
        while stack:
            here, trail = stack.pop()
            for nxt in edges[here]:
                if nxt == start:
                    circles.add(" -> ".join(trail + (start,)))
                elif nxt not in trail and nxt > start:
                    stack.append((nxt, trail + (nxt,)))
    return sorted(circles)


def test_no_import_circle_inside_a_package():
    circles = _circles(Path(dtx.__file__).parent)
    assert not circles, "modules that import each other (move what both need into a third module):\n" + "\n".join(circles)


def test_the_check_sees_a_circle_through_function_local_imports(tmp_path):
    pkg = tmp_path / "dtx" / "store"
    pkg.mkdir(parents=True)
    (tmp_path / "dtx" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from dtx.store.a import f\n")
    (pkg / "a.py").write_text("from dtx.store import c\n\ndef f():\n    from dtx.store.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from dtx.store.a import f\n")
    (pkg / "c.py").write_text("import dtx.errors\n")
    assert _circles(tmp_path / "dtx") == ["dtx.store.a -> dtx.store.b -> dtx.store.a"]
