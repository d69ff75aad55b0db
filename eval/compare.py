"""`paperchat eval --compare RUN_A RUN_B`: two reports side by side with the deltas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import EvalError
from eval.report import REPORT_JSON

SECTIONS = ("retrieval", "answers", "abstention", "citations", "latency", "counts")
SKIP = {"ci95", "n", "curve", "basis", "values"}


def load_report(path: Path) -> dict[str, Any]:
    """A run folder or its report.json."""
    file = path / REPORT_JSON if path.is_dir() else path
    if not file.is_file():
        raise EvalError(f"No evaluation report at {path}.",
                        "Pass a folder written by `paperchat eval` (it holds report.json).")
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EvalError(f"{file} is not valid JSON ({err.msg}).",
                        "Run the evaluation again to rewrite it.") from err
    if not isinstance(report, dict) or "retrieval" not in report:
        raise EvalError(f"{file} is not a paperchat evaluation report.",
                        "Pass a folder written by `paperchat eval`.")
    return report


def flatten(report: dict[str, Any]) -> dict[str, float | None]:
    """'section.metric' (and 'latency.total_ms.p50') -> number, for the compared sections."""
    out: dict[str, float | None] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if key not in SKIP:
                    walk(f"{prefix}.{key}", sub)
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[prefix] = value

    for name in SECTIONS:
        walk(name, report.get(name, {}))
    return out


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(figure, A, B, B - A) for every figure either report has, in report order."""
    fa, fb = flatten(a), flatten(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    rows = []
    for key in keys:
        va, vb = fa.get(key), fb.get(key)
        delta = vb - va if va is not None and vb is not None else None
        rows.append((key, va, vb, delta))
    return rows


def describe(report: dict[str, Any]) -> str:
    run = report.get("run", {})
    return f"{run.get('mode', '?')}{', retrieval only' if run.get('retrieval_only') else ''}"


def print_comparison(path_a: Path, path_b: Path, console: Console | None = None) -> int:
    a, b = load_report(path_a), load_report(path_b)
    title = f"A = {path_a} ({describe(a)})\nB = {path_b} ({describe(b)})"
    table = Table(title=escape(title))
    for col, justify in (("figure", "left"), ("A", "right"), ("B", "right"),
                         ("B − A", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]

    def cell(v: Any) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for key, va, vb, delta in compare_rows(a, b):
        if va is None and vb is None:
            continue
        d = "–" if delta is None else f"{delta:+.3f}" if isinstance(delta, float) else f"{delta:+d}"
        table.add_row(key, cell(va), cell(vb), d)
    (console or Console()).print(table)
    return 0
