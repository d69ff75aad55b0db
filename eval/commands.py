"""`paperchat eval`: run a question set through the assistant and write the report."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import EmptyLibraryError, EvalError
from core.settings import Settings
from eval.aggregate import aggregate
from eval.compare import print_comparison
from eval.nli import load_nli
from eval.questions import Question, file_sha256, load_questions
from eval.record import EvalRecord
from eval.report import REPORT_MD, write_report
from eval.results import ResultsWriter, check_run, load_done
from eval.runner import EvalContext, evaluate_question, skipped_record
from index.library import Library
from index.open import open_library

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    """The commit of the code that ran (with '-dirty' when the tree has changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty.strip() else head


def run_settings(settings: Settings, mode: str) -> Settings:
    """A copy of the settings with the retrieval mode of the run."""
    s = settings.model_copy(deep=True)
    if mode != "no-retrieval":
        s.retrieval.mode = mode  # type: ignore[assignment]
    return s


def build_context(settings: Settings, mode: str, k: int, retrieval_only: bool,
                  library: Library) -> EvalContext:
    """The retriever, model client and answerer the run needs (no model client when only
    retrieval is scored); fails at once, in one line, when the model server is down."""
    from rag.retrieve import Retriever

    ctx = EvalContext(settings=settings, mode=mode, k=k, retrieval_only=retrieval_only)
    if mode != "no-retrieval":
        ctx.retriever = Retriever(settings, library)
    if retrieval_only:
        return ctx
    from rag.answer import Answerer
    from rag.llm import LLMClient

    ctx.llm = LLMClient(settings.llm)
    if settings.llm.answer_mode != "extract" or mode == "no-retrieval":  # extract: no model
        ctx.llm.served_model()
    if ctx.retriever is not None:
        ctx.answerer = Answerer(settings, ctx.retriever, ctx.llm)
    return ctx


def run_questions(ctx: EvalContext, questions: Sequence[Question], out: Path,
                  library_papers: set[str], console: Console) -> list[EvalRecord]:
    """Evaluate the questions not yet in results.jsonl; returns every record, file order."""
    done = load_done(out)
    todo = [q for q in questions if q.id not in done]
    columns = (TextColumn("[bold]eval[/] {task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with ResultsWriter(out) as writer, Progress(*columns, console=console) as progress:
        task = progress.add_task(ctx.mode, total=len(questions), completed=len(questions)
                                 - len(todo))
        for q in todo:
            missing = [p for p in q.papers if p not in library_papers]
            rec = skipped_record(q, ctx, missing) if missing else evaluate_question(ctx, q)
            writer.write(rec)
            done[q.id] = rec
            progress.advance(task)
    return [done[q.id] for q in questions]


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a dict, secrets blanked (the report is meant to be shared)."""
    d = settings.to_toml_dict()
    for section, key in (("llm", "api_key"), ("ui", "auth")):
        if d[section].get(key):
            d[section][key] = "***"
    return d


def settings_fingerprint(settings: Settings) -> str:
    """A hash of the settings that change results (not paths, server address or UI), so a
    resumed run cannot mix records made under two configurations."""
    d = redacted(settings)
    llm = {key: value for key, value in d["llm"].items()
           if not key.startswith(("serve_", "base_url", "api_key", "timeout", "connect"))}
    what = {"retrieval": d["retrieval"], "embedding": d["embedding"],
            "chunking": d["chunking"], "llm": llm}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def default_out(settings: Settings, mode: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.data_dir / "eval" / f"{stamp}-{mode}"


def check_args(args: argparse.Namespace) -> None:
    if args.questions is None:
        raise EvalError("No question file given.",
                        "Run `paperchat eval QUESTIONS.jsonl` or `--compare RUN_A RUN_B`.")
    if args.retrieval_only and args.mode == "no-retrieval":
        raise EvalError("--retrieval-only cannot score --mode no-retrieval (nothing is "
                        "retrieved).", "Drop one of the two options.")
    if args.k < 1 or (args.limit is not None and args.limit < 1):
        raise EvalError("-k and --limit must be at least 1.", "Pass a positive number.")


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Evaluate ``args.questions`` (or compare two runs); returns the exit code: 1 when a
    question failed (rerun with the same --out to retry it), else 0."""
    if args.compare:
        return print_comparison(*args.compare)
    check_args(args)
    console = Console(stderr=True)
    questions = load_questions(args.questions, args.limit)
    mode, retrieval_only = args.mode, bool(args.retrieval_only)
    settings = run_settings(settings, mode)
    out = args.out or default_out(settings, mode)
    run = {"questions": str(args.questions.resolve()),
           "questions_sha256": file_sha256(args.questions), "mode": mode, "k": args.k,
           "retrieval_only": retrieval_only, "seed": getattr(args, "seed", 0),
           "answer_mode": None if retrieval_only else settings.llm.answer_mode,
           "settings_sha256": settings_fingerprint(settings)}
    library = open_library(settings)
    papers = {p.id for p in library.papers()}
    if not papers:
        raise EmptyLibraryError()
    check_run(out, run)
    answers_cited = not retrieval_only and mode != "no-retrieval"
    nli = load_nli(settings) if answers_cited else None  # loaded before the run: fails fast
    ctx = build_context(settings, mode, args.k, retrieval_only, library)
    started = time.time()
    records = run_questions(ctx, questions, out, papers, console)
    report = aggregate(records, seed=run["seed"], retrieval_only=retrieval_only,
                       min_dense_score=settings.retrieval.min_dense_score, nli=nli)
    report["run"] = {**run, "limit": args.limit, "out": str(out),
                     "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                     "seconds_this_session": round(time.time() - started, 1)}
    report["model"] = None
    if ctx.llm is not None:
        if settings.llm.answer_mode != "extract" or mode == "no-retrieval":
            report["model"] = ctx.llm.served_model()  # cached: asked once at the start
        ctx.llm.close()
    report["settings"] = redacted(settings)
    report["library"] = {**library.manifest(), "papers": sorted(papers)}
    report["git_commit"] = git_commit()
    write_report(out, report, records)
    console.print(f"Report: {out / REPORT_MD}")
    print(summary_line(report))
    return 1 if report["counts"]["errors"] else 0


def summary_line(report: dict[str, Any]) -> str:
    r, a, c = report["retrieval"], report["answers"], report["counts"]

    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    return (f"{report['run']['out']}: recall@5 {f(r['recall@5'])}, mrr@10 {f(r['mrr@10'])}, "
            f"evidence@5 {f(r['evidence@5'])}, contains {f(a['contains_rate'])}, abstention F1 "
            f"{f(report['abstention']['f1'])}; {c['scored']} scored, {c['skipped']} skipped, "
            f"{c['errors']} failed")
