"""The built-in reading list (ingest/reading_list.toml), from the seed article."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.types import PaperMeta

DATA = Path(__file__).with_name("reading_list.toml")


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    year: int
    section: str
    arxiv_id: str | None = None
    pdf_url: str | None = None
    n: int | None = None  # number in the article, for the numbered entries
    note: str = ""
    short: tuple[str, ...] = ()  # short names the article uses ("GPT", "InstructGPT")

    @property
    def item(self) -> str:
        """What `paperchat ingest` is given for this entry."""
        return self.arxiv_id or self.pdf_url or self.id

    def meta(self) -> PaperMeta:
        return PaperMeta(id=self.id, title=self.title, year=self.year, arxiv_id=self.arxiv_id,
                         pdf_url=self.pdf_url, metadata_from="reading-list")


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    with DATA.open("rb") as fh:
        raw = tomllib.load(fh)["paper"]
    out = []
    for r in raw:
        pid = r.get("id") or r["arxiv_id"]
        out.append(Entry(id=pid, title=r["title"], year=r["year"], section=r["section"],
                         arxiv_id=r.get("arxiv_id"), pdf_url=r.get("pdf_url"),
                         n=r.get("n"), note=r.get("note", ""),
                         short=tuple(r.get("short", ()))))
    return tuple(out)


def by_id() -> dict[str, Entry]:
    return {e.id: e for e in entries()}


def short_names(paper_id: str, arxiv_id: str | None = None) -> tuple[str, ...]:
    """The reading list's short names of a paper (by id, else by arXiv id)."""
    entry = by_id().get(paper_id) or (by_id().get(arxiv_id) if arxiv_id else None)
    return entry.short if entry else ()


def by_url() -> dict[str, Entry]:
    return {e.pdf_url: e for e in entries() if e.pdf_url}
