"""Paper metadata for a fetched PDF: arXiv API when reachable, else the reading list,
else the PDF itself (its info dictionary and first-page title)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.types import Page, Paper, PaperMeta
from index.names import derive_aliases
from ingest import extract, reading_list

NEW_ID = re.compile(r"^(\d{2})(\d{2})\.\d{4,5}$")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def year_from_arxiv_id(arxiv_id: str) -> int | None:
    m = NEW_ID.match(arxiv_id)
    return 2000 + int(m.group(1)) if m else None


def offline_meta(paper_id: str, arxiv_id: str | None, path: Path, pages: list[Page],
                 info: dict[str, Any] | None = None) -> PaperMeta:
    """Metadata without the network: the reading list, then the PDF's own (``info`` as
    :func:`ingest.extract.pdf_metadata` gives it; read from ``path`` when None)."""
    known = reading_list.by_id().get(paper_id)
    if known is not None:
        return known.meta()
    info = extract.pdf_metadata(path) if info is None else info
    page1 = pages[0].text if pages else ""
    title = str(info.get("title") or "").strip() or extract.first_page_title(page1) or paper_id
    year = (year_from_arxiv_id(arxiv_id) if arxiv_id else None) or info.get("year")
    authors = info.get("authors") or ()
    if isinstance(authors, str):
        authors = tuple(a.strip() for a in re.split(r"[;,]| and ", authors) if a.strip())
    return PaperMeta(id=paper_id, title=title, year=year if isinstance(year, int) else None,
                     authors=tuple(authors), arxiv_id=arxiv_id, metadata_from="pdf")


def aliases_of(paper_id: str, arxiv_id: str | None, title: str, abstract: str,
               authors: tuple[str, ...], year: int | None, pages: list[Page]) -> tuple[str, ...]:
    """The names a question may use for a paper (``index.names``), with the reading list's
    short names."""
    text = "\n".join(p.text for p in sorted(pages, key=lambda p: p.number))
    return derive_aliases(title, abstract, authors, year, text,
                          reading_list.short_names(paper_id, arxiv_id))


def with_aliases(paper: Paper, pages: list[Page]) -> Paper:
    """The paper with its aliases derived again from its stored metadata and text (reindex:
    a library ingested before aliases existed gets them without a download)."""
    return replace(paper, aliases=aliases_of(paper.id, paper.arxiv_id, paper.title,
                                             paper.abstract, paper.authors, paper.year, pages))


def make_paper(meta: PaperMeta, source: str, content_hash: str, pages: list[Page],
               flags: tuple[str, ...] = ()) -> Paper:
    title = meta.title or meta.id
    return Paper(
        id=meta.id, title=title, authors=meta.authors, year=meta.year,
        abstract=meta.abstract, categories=meta.categories, version=meta.version,
        arxiv_id=meta.arxiv_id, pdf_url=meta.pdf_url, source=source,
        content_hash=content_hash, pages=len(pages), metadata_from=meta.metadata_from,
        added_at=datetime.now(UTC).isoformat(timespec="seconds"), flags=flags,
        aliases=aliases_of(meta.id, meta.arxiv_id, title, meta.abstract, meta.authors,
                           meta.year, pages),
    )
