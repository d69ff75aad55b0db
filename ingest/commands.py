"""Subcommands that fill or show the library: ingest, reading-list, list, remove, reindex."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import SourceNotFoundError
from core.links import arxiv_abs_url
from core.settings import Settings
from index.library import Catalog
from index.open import open_library
from ingest import reading_list
from ingest.pipeline import (
    Ingestor,
    IngestReport,
    NullReporter,
    Reporter,
    ingest_items,
    make_chunker,
    writer_lock,
)
from ingest.reindex import reindex

STATUS_STYLE = {"ingested": "green", "replaced": "cyan", "unchanged": "dim", "failed": "red"}


class RichReporter:
    """rich progress bars for download, extraction and embedding."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def stage(self, name: str, total: int) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total, label="")

    def advance(self, name: str, label: str = "") -> None:
        self.progress.update(self.tasks[name], advance=1, label=label)


def summary_table(report: IngestReport) -> Table:
    table = Table(title=f"Ingest summary ({report.seconds:.1f} s)")
    for col in ("item", "id", "status", "pages", "chunks", "title / reason"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        style = STATUS_STYLE.get(r.status, "")
        table.add_row(r.item, r.paper_id, f"[{style}]{r.status}[/]", str(r.pages or ""),
                      str(r.chunks or ""), r.reason or r.title)
    return table


def result_lines(report: IngestReport) -> list[str]:
    """One tab-separated line an item (status, item, id, pages, chunks, title or reason):
    what a pipe, a log or ``grep`` gets instead of the wrapped table."""
    return ["\t".join((r.status, r.item, r.paper_id, str(r.pages or ""), str(r.chunks or ""),
                       " ".join((r.reason or r.title).split())))
            for r in report.results]


def summary_line(report: IngestReport, library: Catalog, settings: Settings) -> str:
    counts = report.to_dict()["counts"]
    done = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    papers = library.papers()
    return (f"Library: {len(papers)} papers, {sum(p.chunks for p in papers)} chunks in "
            f"{settings.data_dir} ({done or 'nothing to do'}; {report.seconds:.1f} s)")


def ingest_runner(settings: Settings) -> type[Ingestor]:
    """The Ingestor of ``ingest.runner``: this machine's threads and processes, or Ray Data
    (its module, and Ray, are imported only then)."""
    if settings.ingest.runner == "ray":
        from ingest.ray_runner import RayIngestor

        return RayIngestor
    return Ingestor


def _say_waiting(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_ingest(settings: Settings, items: list[str], search: str | None = None,
               max_results: int = 10, quiet: bool = False, as_json: bool = False) -> int:
    """`paperchat ingest`: exit code 0 when every item is in the library, 1 otherwise.
    Progress bars go to stderr (when it is a terminal); results go to stdout: a table on a
    terminal, one line an item elsewhere, or JSON."""
    out = Console(quiet=quiet or as_json)
    err = Console(stderr=True, quiet=quiet)
    if not items and not search:
        items = [e.item for e in reading_list.entries()]
        err.print(f"Ingesting the built-in reading list ({len(items)} papers).")
    library = open_library(settings)
    show = not (quiet or as_json) and err.is_terminal
    progress = Progress(TextColumn("{task.description:>8}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[label]}"), console=err, disable=not show)
    reporter: Reporter = RichReporter(progress) if show else NullReporter()
    with progress:
        report = ingest_items(settings, library, items, search, max_results, reporter=reporter,
                              runner=ingest_runner(settings),
                              on_wait=None if quiet else _say_waiting)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return 1 if report.failed else 0
    lines = [] if out.is_terminal else result_lines(report)
    if out.is_terminal:
        out.print(summary_table(report))
    if report.arxiv_unreachable:
        err.print("[yellow]arXiv could not be reached: metadata came from the PDFs "
                  "(and the built-in reading list).[/]")
    if not quiet:
        print("\n".join([*lines, summary_line(report, library, settings)]), flush=True)
    return 1 if report.failed else 0


def print_reading_list(as_json: bool = False) -> int:
    entries = reading_list.entries()
    if as_json:
        print(json.dumps([vars(e) for e in entries], indent=2, ensure_ascii=False))
        return 0
    table = Table(title=f"Built-in reading list ({len(entries)} papers)")
    for col in ("#", "id", "year", "title", "section"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(str(e.n or ""), e.id, str(e.year), e.title, e.section)
    Console().print(table)
    return 0


def list_papers(settings: Settings, as_json: bool = False) -> int:
    papers = Catalog(settings).papers()
    if as_json:
        base = settings.ingest.arxiv_pdf_url
        rows = [{**p.to_dict(), "abs_url": arxiv_abs_url(p.arxiv_id, base) if p.arxiv_id
                 else None} for p in papers]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    table = Table(title=f"{len(papers)} papers in {settings.data_dir}")
    for col in ("id", "year", "pages", "chunks", "title"):
        table.add_column(col, overflow="fold")
    for p in papers:
        table.add_row(p.id, str(p.year or ""), str(p.pages), str(p.chunks), p.title)
    Console().print(table)
    return 0


def remove_papers(settings: Settings, ids: list[str]) -> int:
    library = Catalog(settings)
    missing = []
    with writer_lock(library, on_wait=_say_waiting):
        for pid in ids:
            if library.remove_paper(pid):
                print(f"removed {pid}")
            else:
                missing.append(pid)
    if missing:
        raise SourceNotFoundError(f"Not in the library: {', '.join(missing)}.",
                                  "See `paperchat list` for the ids.")
    return 0


def run_reindex(settings: Settings) -> int:
    library = open_library(settings, check=False)
    with writer_lock(library, on_wait=_say_waiting):
        n = reindex(library, make_chunker(settings))
    print(f"Reindexed {n} chunks with {settings.embedding.model} in {settings.data_dir}",
          file=sys.stderr)
    return 0
