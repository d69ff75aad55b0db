"""The Library tab: list the papers, add them (arXiv ids, arXiv search, PDF upload) with
progress shown in the page, remove them. Writes hold the library's writer lock; the chat
of every session sees the change on its next question (the library refreshes itself)."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape
from pathlib import Path

import gradio as gr

from core.errors import SourceNotFoundError
from core.links import arxiv_abs_url
from core.settings import Settings
from core.types import Paper
from index.library import Library
from ingest.pipeline import IngestReport, ingest_items
from ingest.sources import parse_arxiv_id
from ui.errors import warn
from ui.labels import flag_badge_html
from ui.uploads import save_upload

COLUMNS = ["id", "title", "year", "pages", "chunks", "link"]
STAGES = ("download", "extract", "embed", "index")
ProgressFn = Callable[..., object]  # gr.Progress: progress((done, total), desc=...)
PROGRESS = gr.Progress()  # the default that tells Gradio to hand a handler its progress bar
Views = tuple[str, list[list[object]]]  # (status Markdown, table rows) after an action


class ProgressReporter:
    """The ingest reporter protocol shown as one progress bar over the three stages."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def stage(self, name: str, total: int) -> None:
        self.totals[name], self.done[name] = total, 0
        self._show(name, "")

    def advance(self, name: str, label: str = "") -> None:
        self.done[name] = self.done.get(name, 0) + 1
        self._show(name, label)

    def _show(self, name: str, label: str) -> None:
        total = sum(self.totals.values())
        if total:
            self.progress((sum(self.done.values()), total), desc=f"{name} {label}".strip())


def paper_link(paper: Paper, arxiv_pdf_url: str) -> str:
    """Markdown link: the arXiv abstract (on the configured arXiv host), else the paper's
    own PDF URL, else nothing (a local PDF)."""
    if paper.arxiv_id:
        return f"[{paper.arxiv_id}]({arxiv_abs_url(paper.arxiv_id, arxiv_pdf_url)})"
    return f"[PDF]({paper.pdf_url})" if paper.pdf_url else ""


def table_rows(library: Library) -> list[list[object]]:
    """One row a paper; a flagged paper's title carries its badge ("⚠ hidden text")."""
    base = library.settings.ingest.arxiv_pdf_url
    return [[p.id, _title_with_flags(p), p.year or "", p.pages, p.chunks, paper_link(p, base)]
            for p in sorted(library.papers(), key=lambda p: p.title.lower())]


def _title_with_flags(paper: Paper) -> str:
    """Markdown: the title (HTML-escaped: it comes from the PDF), then a badge per flag."""
    title = escape(paper.title).replace("|", "/")
    return title + flag_badge_html(paper.flags) if paper.flags else title


def report_markdown(report: IngestReport) -> str:
    """The ingest summary (the CLI's table, as Markdown)."""
    lines = [f"**Ingest summary** ({report.seconds:.1f} s)", "",
             "| item | id | status | pages | chunks | title / reason |",
             "|---|---|---|---|---|---|"]
    for r in report.results:
        why = (r.reason or r.title).replace("|", "/")
        lines.append(f"| {escape(r.item)} | {r.paper_id} | {r.status} | {r.pages or ''} | "
                     f"{r.chunks or ''} | {escape(why)} |")
    return "\n".join(lines)


def arxiv_items(text: str) -> list[str]:
    """arXiv ids or arXiv URLs from free text (commas, spaces or lines between them).
    The browser may name only arXiv papers: never a path on the server."""
    items = [t for t in re.split(r"[\s,;]+", text or "") if t]
    bad = [t for t in items if parse_arxiv_id(t) is None]
    if bad:
        raise SourceNotFoundError(f"Not an arXiv id: {', '.join(bad)}.",
                                  "Give ids such as 1706.03762 or arXiv URLs.")
    if not items:
        raise SourceNotFoundError("No arXiv id given.", "Type ids such as 1706.03762.")
    return items


class LibraryActions:
    def __init__(self, settings: Settings, library: Library) -> None:
        self.settings = settings
        self.library = library

    def ingest(self, items: list[str], search: str | None, max_results: int,
               progress: ProgressFn, upload: bool = False) -> Views:
        """Run the real ingest pipeline; failures and an offline arXiv become warnings."""
        report = ingest_items(self.settings, self.library, items, search, max_results,
                              reporter=ProgressReporter(progress), wait=False, upload=upload)
        if report.arxiv_unreachable:
            warn("arXiv could not be reached: metadata came from the PDFs "
                 "(and the built-in reading list).")
        for r in report.failed:
            warn(f"{r.item}: {r.reason}")
        return report_markdown(report), table_rows(self.library)

    def add_ids(self, text: str, progress: ProgressFn = PROGRESS) -> Views:
        return self.ingest(arxiv_items(text), None, 10, progress)

    def add_search(self, query: str, max_results: float, progress: ProgressFn = PROGRESS) -> Views:
        query = (query or "").strip()
        if not query:
            raise SourceNotFoundError("No search words given.", "Type what to search arXiv for.")
        return self.ingest([], query, int(max_results), progress)

    def add_upload(self, path: str | None, progress: ProgressFn = PROGRESS) -> Views:
        if not path:
            raise SourceNotFoundError("No file uploaded.", "Choose a PDF file first.")
        saved = save_upload(Path(path), Path(path).name, self.settings)
        return self.ingest([str(saved)], None, 10, progress, upload=True)

    def remove(self, ids: list[str] | None) -> Views:
        ids = list(ids or [])
        if not ids:
            raise SourceNotFoundError("No paper chosen.", "Pick the papers to remove.")
        with self.library.writer(wait=False):
            missing = [pid for pid in ids if not self.library.remove_paper(pid)]
            self.library.refresh()
        if missing:
            raise SourceNotFoundError(f"Not in the library: {', '.join(missing)}.",
                                      "See `paperchat list` for the ids.")
        return f"Removed {', '.join(ids)}.", table_rows(self.library)
