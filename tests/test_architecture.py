"""The floor plan, checked from the imports (DESIGN.md): a package imports only packages on
lower floors (or its own), rooms on one floor do not import each other, nothing of the app
imports the test stand-ins, and no module takes part in an import loop. Imports under
``if TYPE_CHECKING:`` are left out (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

FLOORS = {"core": 0, "index": 1, "ingest": 2, "rag": 2, "serve": 2, "ui": 3, "eval": 3,
          "paperchat": 4}
OUTSIDE = {"support", "tests", "benchmarks"}  # stand-ins and tools: the app never imports them


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Project modules ``path`` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out.update(n for n in names if n.split(".")[0] in FLOORS | dict.fromkeys(OUTSIDE))
    return out


def app_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in FLOORS for p in (REPO / pkg).rglob("*.py")}


def test_no_import_runs_upward_or_across_a_floor() -> None:
    bad = []
    for name, path in app_modules().items():
        here = name.split(".")[0]
        for target in imports_of(path):
            there = target.split(".")[0]
            if there in OUTSIDE:
                bad.append(f"{name} -> {target} (a test stand-in)")
            elif there != here and FLOORS[there] >= FLOORS[here]:
                bad.append(f"{name} -> {target} (floor {FLOORS[here]} -> {FLOORS[there]})")
    assert not bad, "imports against the floor plan:\n" + "\n".join(sorted(bad))


def test_no_module_is_part_of_an_import_loop() -> None:
    modules = app_modules()
    graph = {name: {t for t in imports_of(path) if t in modules and t != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    loops: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not loops, "import loops:\n" + "\n".join(loops)


def test_the_checks_see_an_upward_import(tmp_path: Path) -> None:
    """The checker itself works: a ground-floor file importing a room is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("from rag.answer import Answerer\nif TYPE_CHECKING:\n    import ui.app\n")
    assert imports_of(probe) == {"rag.answer", "rag.answer.Answerer"}
