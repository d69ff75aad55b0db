"""Retrieval ablation (issue 9): what each part of retrieval adds, on the project's question
sets (``eval/sets/tune.jsonl``, ``test.jsonl``) and the shared dev set, with the figures and
95% bootstrap intervals of ``paperchat eval --retrieval-only`` (same code: ``eval.runner``
and ``eval.aggregate``; 5 passages shown, a ranking of 10 scored).

Rows, each adding to the one before from ``hybrid`` on (the other settings are the
library's, i.e. the defaults):

* ``dense`` / ``bm25``: one retriever, no paper names, no sentence ranking;
* ``hybrid``: both, fused by weighted RRF, per-paper cap;
* ``+ paper-aware``: the papers a question names are searched on their own, uncapped and
  promoted (``retrieval.paper_aware``);
* ``+ evidence ranking``: candidates also ranked by their best sentence, cut sentences
  completed (``retrieval.evidence_weight``, ``retrieval.whole_sentences``): the default.

``--tune`` first searches the retrieval settings on ``tune`` only (``TUNED``: one setting
at a time from the defaults, each value tried with the others at their best so far; a
value replaces the current one only when it is strictly better on evidence@5, then MRR@10,
then recall@5) and reports what it picked beside the defaults; ``test`` and the dev set
never take part in a choice. The chunk size is not searched here (each value needs a
reindex of the library).

    python -m benchmarks.retrieval_ablation --library DATA_DIR [--sets tune test dev] [--tune]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    REPO,
    bench_settings,
    machine,
    markdown_table,
    parser,
    run_main,
    write_results,
)
from core.settings import Settings
from eval.aggregate import aggregate
from eval.questions import load_questions
from eval.runner import EvalContext, evaluate_question
from index.library import Library
from index.open import open_library
from rag.retrieve import Retriever

NAME = "retrieval_ablation"
METRICS = ("evidence@5", "recall@5", "mrr@10")
OFF = {"paper_aware": False, "evidence_weight": 0.0, "whole_sentences": False}
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("dense", "dense", OFF),
    ("bm25", "bm25", OFF),
    ("hybrid", "hybrid", OFF),
    ("+ paper-aware", "hybrid", {"evidence_weight": 0.0, "whole_sentences": False}),
    ("+ evidence ranking", "hybrid", {}),
    ("same, settings before tuning", "hybrid",
     {"per_paper_cap": 4, "evidence_weight": 1.0, "evidence_dense_share": 0.5}),
]


TUNED: dict[str, list[Any]] = {
    "dense_weight": [0.2, 0.35, 0.6, 1.0],
    "rrf_k": [10, 20, 60],
    "per_paper_cap": [2, 3, 4, 6],
    "named_weight": [0.5, 1.0, 2.0],
    "evidence_weight": [0.5, 1.0, 2.0],
    "evidence_dense_share": [0.25, 0.5, 0.75],
}


def question_sets(shared: Path, names: list[str]) -> dict[str, Path]:
    paths = {"tune": REPO / "eval" / "sets" / "tune.jsonl",
             "test": REPO / "eval" / "sets" / "test.jsonl",
             "dev": shared / "eval" / "dev_questions.jsonl"}
    return {name: paths[name] for name in names}


def score(settings: Settings, library: Library, mode: str, path: Path) -> dict[str, Any]:
    """The retrieval section of the eval report of one question set."""
    ctx = EvalContext(settings=settings, mode=mode, k=5, retrieval_only=True,
                      retriever=Retriever(settings, library))
    papers = {p.id for p in library.papers()}
    records = [evaluate_question(ctx, q) for q in load_questions(path)
               if set(q.papers) <= papers]
    report = aggregate(records, seed=0, retrieval_only=True,
                       min_dense_score=settings.retrieval.min_dense_score)
    retrieval: dict[str, Any] = report["retrieval"]
    ms = [r.timings.retrieval_ms for r in records if r.timings.retrieval_ms is not None]
    retrieval["retrieval_ms_p50"] = float(np.median(ms)) if ms else None
    return retrieval


def key(section: dict[str, Any]) -> tuple[float, float, float]:
    return (round(section["evidence@5"], 6), round(section["mrr@10"], 6),
            round(section["recall@5"], 6))


def with_changes(base: Settings, changes: dict[str, Any]) -> Settings:
    settings = base.model_copy(deep=True)
    for name, value in changes.items():
        setattr(settings.retrieval, name, value)
    return settings


def tune(base: Settings, library: Library, path: Path) -> tuple[dict[str, Any], list[Any]]:
    """The settings picked on ``path`` (coordinate search over ``TUNED`` from the defaults)
    and one row per configuration tried."""
    best = {name: getattr(base.retrieval, name) for name in TUNED}
    best_key = key(score(base, library, "hybrid", path))
    rows: list[Any] = [["defaults", "", *best_key]]
    for name, values in TUNED.items():
        for value in values:
            if value == best[name]:
                continue
            found = key(score(with_changes(base, {**best, name: value}), library, "hybrid",
                              path))
            rows.append([name, value, *found])
            if found > best_key:
                best, best_key = {**best, name: value}, found
        print(f"tune {name}: {best[name]}", file=sys.stderr, flush=True)
    return best, rows


def cell(section: dict[str, Any], metric: str) -> str:
    value, ci = section[metric], section["ci95"][metric]
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.3f}"


def run(library_dir: Path, shared: Path, sets: list[str], out: Path,
        search: bool) -> dict[str, Any]:
    base = bench_settings(library_dir)
    library = open_library(base)
    paths = question_sets(shared, sets)
    figures: dict[str, Any] = {}
    tables = []
    if search:
        picked, tried = tune(base, library, question_sets(shared, ["tune"])["tune"])
        defaults = {name: getattr(base.retrieval, name) for name in TUNED}
        figures["tuning"] = {"picked": picked, "defaults": defaults, "tried": tried}
        tables.append("### Settings searched on `tune` (hybrid; each row changes one setting "
                      "of the best so far)\n\n" + markdown_table(
                          ["setting", "value", "evidence@5", "mrr@10", "recall@5"], tried)
                      + f"\n\npicked: {picked}\ndefaults: {defaults}")
    rows = []
    for label, mode, changes in ROWS:
        settings = with_changes(base, changes)
        figures[label] = {name: score(settings, library, mode, path)
                          for name, path in paths.items()}
        for name in paths:
            rows.append([label, name, *(cell(figures[label][name], m) for m in METRICS),
                         figures[label][name]["n"]["evidence@5"],
                         figures[label][name]["retrieval_ms_p50"]])
        print(f"{label}: done", file=sys.stderr, flush=True)
    tables.append("### Retrieval ablation (k = 5; 95% bootstrap intervals)\n\n"
                  + markdown_table(["configuration", "set", *METRICS, "questions",
                                   "p50 ms (in-process)"], rows))
    write_results(out, NAME, "full", base.retrieval.model_dump(), figures, tables, machine())
    library.close()
    return figures


def main() -> int:
    p = parser(__doc__ or NAME)
    p.add_argument("--library", type=Path, required=True, help="data dir of a corpus library")
    p.add_argument("--sets", nargs="+", default=["tune", "test", "dev"],
                   choices=["tune", "test", "dev"])
    p.add_argument("--tune", action="store_true",
                   help="first search the retrieval settings on the tune set")
    args = p.parse_args()
    run(args.library, args.shared, args.sets, args.out, args.tune)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
