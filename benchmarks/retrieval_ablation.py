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

    python -m benchmarks.retrieval_ablation --library DATA_DIR [--sets tune test dev]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
]


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
    return retrieval


def cell(section: dict[str, Any], metric: str) -> str:
    value, ci = section[metric], section["ci95"][metric]
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.3f}"


def run(library_dir: Path, shared: Path, sets: list[str], out: Path) -> dict[str, Any]:
    base = bench_settings(library_dir)
    library = open_library(base)
    paths = question_sets(shared, sets)
    figures: dict[str, Any] = {}
    rows = []
    for label, mode, changes in ROWS:
        settings = base.model_copy(deep=True)
        for key, value in changes.items():
            setattr(settings.retrieval, key, value)
        figures[label] = {name: score(settings, library, mode, path)
                          for name, path in paths.items()}
        for name in paths:
            rows.append([label, name, *(cell(figures[label][name], m) for m in METRICS),
                         figures[label][name]["n"]["evidence@5"]])
        print(f"{label}: done", file=sys.stderr, flush=True)
    table = ("### Retrieval ablation (k = 5; 95% bootstrap intervals)\n\n"
             + markdown_table(["configuration", "set", *METRICS, "questions"], rows))
    write_results(out, NAME, "full", base.retrieval.model_dump(), figures, [table], machine())
    library.close()
    return figures


def main() -> int:
    p = parser(__doc__ or NAME)
    p.add_argument("--library", type=Path, required=True, help="data dir of a corpus library")
    p.add_argument("--sets", nargs="+", default=["tune", "test", "dev"],
                   choices=["tune", "test", "dev"])
    args = p.parse_args()
    run(args.library, args.shared, args.sets, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
