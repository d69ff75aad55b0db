"""`paperchat search` and `paperchat ask`."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import EmptyLibraryError
from core.settings import Settings
from core.text import reflow
from core.types import Answer
from index.open import open_library, require_library
from rag import export
from rag.engine import build_engine
from rag.extract import REPLACED_WHY
from rag.retrieve import Retriever


def snippet(text: str, n: int = 160) -> str:
    text = reflow(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def run_search(settings: Settings, query: str, k: int | None, papers: list[str] | None,
               as_json: bool, years: tuple[int, int] | None = None) -> int:
    require_library(settings)
    library = open_library(settings)
    retrieval = Retriever(settings, library).search(query, k=k, paper_ids=papers, years=years)
    if as_json:
        print(json.dumps({"query": query, "hits": [h.to_dict() for h in retrieval.hits],
                          "best_dense": retrieval.best_dense,
                          "timings_ms": retrieval.timings_ms}, indent=2, ensure_ascii=False))
        return 0
    table = Table(title=f"{query}  ({retrieval.timings_ms['total']:.0f} ms)")
    for col in ("#", "paper", "page", "score", "title / passage"):
        table.add_column(col, overflow="fold")
    for h in retrieval.hits:
        table.add_row(str(h.rank), h.chunk.paper_id, str(h.chunk.page_start), f"{h.score:.4f}",
                      f"[bold]{h.paper_title}[/]\n{snippet(h.chunk.text)}")
    Console().print(table)
    return 0


def print_sources(answer: Answer, console: Console) -> None:
    """The passages the model was shown, numbered as in its prompt, the cited ones marked
    (after a retrieval abstention: the passages found, which the model was not shown)."""
    if answer.abstained:
        console.print(f"[yellow]abstained ({answer.abstain_reason}): the library does not "
                      "support an answer.[/]")
    if answer.sources:
        console.print("\n[bold]Passages retrieved (not shown to the model)[/]"
                      if answer.abstain_reason == "retrieval" else
                      "\n[bold]Passages retrieved[/] (* = quoted in the answer)"
                      if answer.mode == "extract" and not answer.model else
                      "\n[bold]Sources shown to the model[/] (* = cited in the answer)")
    cited = {c.n for c in answer.citations}
    for c in answer.sources:
        n = c.n
        mark = "*" if n in cited else " "
        console.print(escape(f"{mark} [{n}] {c.title} ({c.year or 'n.d.'}), p. {c.page}  "
                             f"{c.pdf_url or c.url or ''}").rstrip(), soft_wrap=True)
        console.print(f"      [dim]{escape(snippet(c.text, 160))}[/]", soft_wrap=True)
    if answer.removed_citations:
        console.print(f"[dim]{len(answer.removed_citations)} invalid citation(s) removed.[/]")
    t = answer.timings
    model = f", first token {t.ttft_ms or 0:.0f} ms" if answer.model else ""
    console.print(f"[dim]retrieval {t.retrieval_ms:.0f} ms{model}, total {t.total_ms:.0f} ms"
                  f"{', model ' + answer.model if answer.model else ''}[/]")


SUPPORT_MARK = {"supported": "[green]✓[/]", "partial": "[yellow]~ partial[/]",
                "unsupported": "[bold red]✗ unsupported[/]", "uncited": "[dim](uncited)[/]"}


def answer_heading(answer: Answer) -> str:
    """What the answer is: the model's, checked; or quotes (and why the model's text was
    replaced, in ``auto``)."""
    if answer.mode != "extract":
        return "Answer, each sentence checked against its cited passages:"
    if not answer.model_answer:
        return "Quoted from the sources (no model was asked):"
    why = [REPLACED_WHY[r] for r in answer.degenerate if r in REPLACED_WHY]
    return (f"Quoted from the sources (the model's answer was replaced: "
            f"{'; '.join(why) or 'it degenerated'}):")


def print_checked(answer: Answer, console: Console) -> None:
    """The answer a sentence a line, each with its support (unsupported ones marked with
    what is missing), then the quoted evidence."""
    console.print(f"\n[bold]{escape(answer_heading(answer))}[/]")
    for s in answer.sentences:
        note = f" [dim]{escape(s.note)}[/]" if s.support in ("partial", "unsupported") else ""
        console.print(f"  {escape(s.text)} {SUPPORT_MARK[s.support]}{note}", soft_wrap=True)
    totals = answer.support_totals()
    if answer.sentences:
        console.print("[dim]" + ", ".join(f"{v} {k}" for k, v in totals.items() if v) + "[/]")
    if answer.mode == "extract":
        return  # the answer is the evidence
    if answer.evidence:
        console.print("\n[bold]Evidence[/] (the passages' sentences that best answer the "
                      "question):")
    for q in answer.evidence:
        console.print(escape(f"  [{q.n}] “{reflow(q.text)}” ({q.title}, p. {q.page})"),
                      soft_wrap=True)


def run_ask(settings: Settings, question: str, k: int | None, papers: list[str] | None,
            as_json: bool, years: tuple[int, int] | None = None, fmt: str = "text") -> int:
    """`paperchat ask`: stream the answer, then its sources (``fmt`` "text"), or print it
    once done as Markdown, BibTeX or JSON (:mod:`rag.export`; ``as_json`` means "json")."""
    fmt = "json" if as_json else fmt
    require_library(settings)
    engine = build_engine(settings)
    if engine.library.chunk_count() == 0:  # before the server: ingesting comes first
        raise EmptyLibraryError()
    if settings.llm.answer_mode != "extract":  # extract never calls the model
        engine.llm.served_model()  # fail early, in one line, if the server is down
    answer: Answer | None = None
    streamed = False
    for event in engine.answerer.stream(question, k=k, paper_ids=papers, years=years):
        if event.kind == "token" and fmt == "text" and settings.llm.answer_mode != "extract":
            sys.stdout.write(event.text)
            sys.stdout.flush()
            streamed = True
        elif event.kind == "done":
            answer = event.answer
    assert answer is not None
    if fmt != "text":
        sys.stdout.write(export.render(answer, fmt, {p.id: p for p in engine.library.papers()}))
        return 0
    console = Console()
    if streamed:
        console.print()
    if not answer.abstained:
        print_checked(answer, console)
    elif not streamed:
        console.print(escape(answer.answer))
    print_sources(answer, console)
    return 0
