"""Calibrate the refusal (``retrieval.min_dense_score``, ``retrieval.min_evidence_score``,
``retrieval.min_name_coverage``) on a tune split and report it on a test split.

The refusal is decided before any model is called (rag.answer.Answerer.refuses), so this
needs no model server: each question is searched as the answerer searches it (the
rewrite without a model), its retrieved passages' sentences are scored, and the signal is
recorded. A grid of thresholds is then scored on the tune questions, unanswerable ones as
the positive class: the highest abstention F1 whose false-abstention rate (answerable
questions refused) stays within ``--max-false-abstention``; among equal ones, the one
nearest the middle of that plateau (the most margin on both sides). The test questions
are only scored with the chosen thresholds and with the current settings, never tuned on.

    python -m benchmarks.calibrate_refusal --library DATA_DIR --tune eval/sets/tune.jsonl \\
        --test eval/sets/test.jsonl [--max-false-abstention 0.05] [--out benchmarks/results]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    bench_settings,
    machine,
    markdown_table,
    run_main,
    write_results,
)
from core.settings import Settings
from eval.metrics import abstention_scores
from eval.questions import load_questions

NAME = "refusal"
DENSE = np.round(np.arange(0.20, 0.50, 0.01), 2)
EVIDENCE = np.round(np.arange(0.20, 0.70, 0.01), 2)
NAMES = np.round(np.arange(0.0, 1.01, 0.05), 2)
Thresholds = tuple[float, float, float]  # dense, evidence, name coverage


def collect(settings: Settings, files: Sequence[Path], cache: Path) -> list[dict[str, Any]]:
    """One row per question: id, unanswerable, the refusal signal (no model is called).
    Rows are appended to ``cache`` as they are made and reused from it (by file, id and
    question text) when the run is repeated."""
    from rag.engine import build_engine  # heavy (torch): only when something is searched
    from rag.rewrite import rewrite_query

    done = {}
    if cache.is_file():
        for line in cache.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done[(row["file"], row["id"], row["question"])] = row
    engine = None
    rows = []
    with cache.open("a", encoding="utf-8") as out:
        for path in files:
            for q in load_questions(path):
                row = done.get((path.name, q.id, q.question))
                if row is None:
                    engine = engine or build_engine(settings)
                    query = rewrite_query(q.question, [], None)
                    retrieval = engine.retriever.search(query)
                    _, sig = engine.answerer.assess(query, retrieval.hits,
                                                    retrieval.best_dense)
                    row = {"id": q.id, "file": path.name, "question": q.question,
                           "unanswerable": q.unanswerable, **sig.to_dict()}
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    out.flush()
                rows.append(row)
    return rows


def refused(row: dict[str, Any], t: Thresholds) -> bool:
    """Answerer.refuses on a recorded signal."""
    return (row["best_dense"] < t[0] or row["best_sentence"] < t[1]
            or row["name_coverage"] < t[2])


def scores(rows: Sequence[dict[str, Any]], t: Thresholds) -> dict[str, Any]:
    pairs = [(bool(r["unanswerable"]), refused(r, t)) for r in rows]
    out: dict[str, Any] = dict(abstention_scores(pairs))
    out["n"] = {"unanswerable": sum(u for u, _ in pairs),
                "answerable": sum(not u for u, _ in pairs)}
    out["missed"] = [r["id"] for r, (u, a) in zip(rows, pairs, strict=True) if u and not a]
    out["refused_answerable"] = [r["id"] for r, (u, a) in zip(rows, pairs, strict=True)
                                 if a and not u]
    return out


def choose(rows: Sequence[dict[str, Any]], max_false: float) -> Thresholds:
    """The best thresholds on ``rows`` (see the module's docstring)."""
    best: list[Thresholds] = []
    best_key: tuple[float, float] | None = None
    for t in product(DENSE, EVIDENCE, NAMES):
        s = scores(rows, (float(t[0]), float(t[1]), float(t[2])))
        if s["false_abstention_rate"] is None or s["false_abstention_rate"] > max_false:
            continue
        key = (s["f1"] or 0.0, -s["false_abstention_rate"])
        if best_key is None or key > best_key:
            best, best_key = [], key
        if key == best_key:
            best.append((float(t[0]), float(t[1]), float(t[2])))
    if not best:
        return (0.0, 0.0, 0.0)
    centre = np.mean(np.asarray(best), axis=0)
    spread = np.ptp(np.asarray(best), axis=0) + 1e-9
    return min(best, key=lambda t: float(np.sum(((np.asarray(t) - centre) / spread) ** 2)))


def row_table(name: str, result: dict[str, Any]) -> list[object]:
    return [name, result["f1"], result["precision"], result["recall"],
            result["false_abstention_rate"], result["n"]["unanswerable"],
            result["n"]["answerable"]]


def main() -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library", type=Path, required=True, help="data dir of the library")
    p.add_argument("--tune", type=Path, nargs="+", required=True, help="tune question files")
    p.add_argument("--test", type=Path, nargs="*", default=[], help="test question files")
    p.add_argument("--max-false-abstention", type=float, default=0.05)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--cache", type=Path, help="signals of questions already searched (JSONL; "
                   "default OUT/refusal_signals.jsonl; delete it after changing the library "
                   "or the signal)")
    args = p.parse_args()
    settings = bench_settings(args.library)
    info = machine()
    cache = args.cache or args.out / "refusal_signals.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    tune = collect(settings, args.tune, cache)
    test = collect(settings, args.test, cache) if args.test else []
    chosen = choose(tune, args.max_false_abstention)
    r = settings.retrieval
    current = (r.min_dense_score, r.min_evidence_score, r.min_name_coverage)
    figures: dict[str, Any] = {"chosen": dict(zip(("min_dense_score", "min_evidence_score",
                                   "min_name_coverage"), chosen, strict=True)),
               "current": dict(zip(("min_dense_score", "min_evidence_score",
                                    "min_name_coverage"), current, strict=True)),
               "tune": scores(tune, chosen), "tune_current": scores(tune, current),
               "test": scores(test, chosen) if test else None,
               "test_current": scores(test, current) if test else None,
               "dense_only_tune": scores(tune, (choose_dense(tune, args), 0.0, 0.0)),
               "questions": {"tune": tune, "test": test}}
    rows = [row_table("tune, chosen", figures["tune"]),
            row_table("tune, current settings", figures["tune_current"])]
    if test:
        rows += [row_table("test, chosen", figures["test"]),
                 row_table("test, current settings", figures["test_current"])]
    table = (f"### Refusal before the model (chosen: min_dense_score {chosen[0]:g}, "
             f"min_evidence_score {chosen[1]:g}, min_name_coverage {chosen[2]:g})\n\n"
             + markdown_table(["split", "F1", "precision", "recall", "false abstention",
                               "unanswerable", "answerable"], rows))
    write_results(args.out, NAME, "full", {"tune": [str(x) for x in args.tune],
                                           "test": [str(x) for x in args.test],
                                           "max_false_abstention": args.max_false_abstention},
                  figures, [table], info)
    return 0


def choose_dense(rows: Sequence[dict[str, Any]], args: Any) -> float:
    """The best dense threshold alone (what the refusal was before this signal)."""
    best, key = 0.0, (-1.0, 0.0)
    for d in DENSE:
        s = scores(rows, (float(d), 0.0, 0.0))
        fa = s["false_abstention_rate"]
        if fa is not None and fa <= args.max_false_abstention and ((s["f1"] or 0.0), -fa) > key:
            best, key = float(d), ((s["f1"] or 0.0), -fa)
    return best


if __name__ == "__main__":
    sys.exit(run_main(main))
