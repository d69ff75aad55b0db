"""Pages of the library's papers for a viewer: the library's copy of a paper's PDF, its pages
rendered (JPEG, cached on disk, size-bounded) and the highlight boxes of a passage (and of
sentences inside it) on its pages. No UI here: the chat's routes, the benchmark and tests use
:class:`PageView` alike.

A request names a paper id or a chunk id, never a path: the file is the one the library
records for the paper (:meth:`index.pdfstore.PdfStore.find`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from core.errors import LibraryError, SourceNotFoundError
from core.fsio import disk_full_as_error
from core.types import Chunk, Paper
from index.library import Catalog
from ingest.pages import (
    SCALES,
    Located,
    PageChars,
    PdfPages,
    line_boxes,
    locate,
    passage_parts,
    to_jpeg,
)

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")
MAX_PASSAGE = 50_000  # characters of a passage a request may ask for
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"  # start and end of image markers
Box = tuple[float, float, float, float]


class NoPdfCopyError(LibraryError):
    """The library holds no copy of a paper's PDF (stored before copies were kept)."""


class _Lru(OrderedDict[K, V]):
    def __init__(self, size: int, on_evict: Callable[[V], object] | None = None) -> None:
        super().__init__()
        self.size, self.on_evict = size, on_evict

    def get_or(self, key: K, make: Callable[[], V]) -> V:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.size:
            _, old = self.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old)
        return value


@dataclass
class Highlight:
    """A passage located on its pages: boxes (fractions of the page, origin top-left) of the
    passage and, stronger, of the sentences asked for; ``complete`` when every character of
    the passage was found."""

    paper_id: str
    title: str
    page_count: int
    first_page: int
    boxes: dict[int, list[Box]] = field(default_factory=dict)
    strong: dict[int, list[Box]] = field(default_factory=dict)
    aspect: dict[int, float] = field(default_factory=dict)
    complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        def rounded(d: dict[int, list[Box]]) -> dict[str, list[list[float]]]:
            return {str(p): [[round(v, 5) for v in b] for b in boxes] for p, boxes in d.items()}

        return {"paper": self.paper_id, "title": self.title, "pages": self.page_count,
                "first": self.first_page, "boxes": rounded(self.boxes),
                "strong": rounded(self.strong), "complete": self.complete,
                "aspect": {str(p): round(a, 5) for p, a in self.aspect.items()}}


class PageView:
    """Renders and highlights the pages of ``catalog``'s papers. One per process; safe to
    call from several threads (pdfium calls are serialised in :mod:`ingest.pages`)."""

    def __init__(self, catalog: Catalog, cache_dir: Path, cache_mb: float) -> None:
        self.catalog = catalog
        self.cache_dir = Path(cache_dir)
        self.cache_bytes = int(cache_mb * 1024 * 1024)
        self._lock = threading.RLock()
        self._docs: _Lru[Path, PdfPages] = _Lru(4, lambda d: d.close())
        self._chars: _Lru[tuple[Path, int], PageChars] = _Lru(48)
        self._highlights: _Lru[tuple[Any, ...], Highlight] = _Lru(256)
        self._cached_total: int | None = None

    # -- the PDF --------------------------------------------------------------------
    def paper(self, paper_id: str) -> Paper:
        paper = self.catalog.paper(paper_id) if paper_id else None
        if paper is None:
            raise SourceNotFoundError(f"No paper {paper_id!r} in the library.",
                                      "See `paperchat list` for the ids.")
        return paper

    def pdf_path(self, paper: Paper) -> Path:
        """The library's copy of the paper's PDF (inside the PDF store)."""
        path = self.catalog.pdfs.find(paper)
        if path is None:
            raise NoPdfCopyError(
                f"The library holds no copy of the PDF of {paper.id} (it was added before "
                "paperchat kept copies, and its download is gone).",
                f"Ingest it again: paperchat ingest {paper.source}")
        return path

    def _doc(self, path: Path) -> PdfPages:
        with self._lock:
            return self._docs.get_or(path, lambda: PdfPages(path))

    def _page_chars(self, path: Path, number: int) -> PageChars:
        with self._lock:
            return self._chars.get_or((path, number), lambda: self._doc(path).chars(number))

    # -- page images ----------------------------------------------------------------
    def page_image(self, paper_id: str, number: int, scale: float) -> Path:
        """The image (JPEG) of page ``number`` at ``scale`` (one of ``SCALES``), from the cache or
        rendered into it."""
        if scale not in SCALES:
            raise SourceNotFoundError(f"No rendering at scale {scale}.",
                                      f"Use one of {', '.join(map(str, SCALES))}.")
        paper = self.paper(paper_id)
        path = self.pdf_path(paper)
        if not 1 <= number <= paper.pages:
            raise SourceNotFoundError(f"{paper.id} has no page {number}.",
                                      f"Pages run from 1 to {paper.pages}.")
        image = self.cache_dir / f"{paper.content_hash}-p{number}-x{scale:g}.jpg"
        if _valid_image(image):
            with contextlib.suppress(OSError):  # a read-only cache still serves
                os.utime(image)  # most recently used: evicted last
            return image
        with self._lock:  # a document is closed only under this lock (LRU eviction)
            bitmap = self._doc(path).render(number, scale)
        data = to_jpeg(bitmap)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _write_cache_file(image, data)
        self._account(len(data))
        return image

    def _account(self, added: int) -> None:
        """Keep the image cache under its size: drop the least recently used images."""
        with self._lock:
            if self._cached_total is None:
                self._cached_total = sum(p.stat().st_size for p in self.cache_dir.glob("*.jpg"))
            else:
                self._cached_total += added
            if self._cached_total <= self.cache_bytes:
                return
            files = sorted(self.cache_dir.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            for old in files[:-1]:  # never the image just written
                if total <= 0.8 * self.cache_bytes:
                    break
                total -= old.stat().st_size
                old.unlink(missing_ok=True)
            self._cached_total = total

    # -- highlights -----------------------------------------------------------------
    def highlight(self, chunk_id: int, length: int | None = None,
                  spans: tuple[tuple[int, int], ...] = ()) -> Highlight:
        """Boxes of the passage starting at chunk ``chunk_id`` (``length`` characters of its
        paper's text from there: a passage merged from consecutive chunks is longer than its
        first chunk; the chunk's own text by default) and of ``spans`` of it (offsets into
        the passage: the sentence an answer was checked against)."""
        key = (self.catalog.counters(), chunk_id, length, spans)
        with self._lock:
            if key in self._highlights:
                self._highlights.move_to_end(key)
                return self._highlights[key]
        result = self._compute(chunk_id, length, spans)
        with self._lock:
            return self._highlights.get_or(key, lambda: result)

    def _compute(self, chunk_id: int, length: int | None,
                 spans: tuple[tuple[int, int], ...]) -> Highlight:
        chunk = self.catalog.store.chunks_by_ids([chunk_id]).get(chunk_id)
        if chunk is None:
            raise SourceNotFoundError(f"No passage {chunk_id} in the library.",
                                      "Ask the question again: the library changed.")
        paper = self.paper(chunk.paper_id)
        path = self.pdf_path(paper)
        texts = {p.number: p.text for p in self.catalog.pages_of(paper.id)
                 if chunk.page_start <= p.number <= chunk.page_end + 8}
        text = passage_text(chunk, texts, length)
        parts = passage_parts(texts, chunk.page_start, chunk.char_start, text)
        chars = _Pages(lambda n: self._page_chars(path, n), paper.pages)
        found = locate(chars, parts, text)  # reads a page's characters when it needs them
        out = Highlight(paper.id, paper.title, paper.pages, chunk.page_start,
                        complete=found.complete)
        _boxes_into(out.boxes, found, chars, 0, None)
        for start, end in spans:
            _boxes_into(out.strong, found, chars, start, end)
        out.aspect = {n: chars[n].aspect for n in out.boxes}
        if out.boxes:
            out.first_page = min(out.boxes)
        return out

    def close(self) -> None:
        with self._lock:
            for doc in self._docs.values():
                doc.close()
            self._docs.clear()


class _Pages(Mapping[int, PageChars]):
    """Page number -> characters, read on first use."""

    def __init__(self, load: Callable[[int], PageChars], count: int) -> None:
        self.load, self.count = load, count
        self.read: dict[int, PageChars] = {}

    def __getitem__(self, number: int) -> PageChars:
        if not 1 <= number <= self.count:
            raise KeyError(number)
        if number not in self.read:
            self.read[number] = self.load(number)
        return self.read[number]

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self.count + 1))

    def __len__(self) -> int:
        return self.count


def passage_text(chunk: Chunk, texts: dict[int, str], length: int | None) -> str:
    """``length`` characters of the paper's text from the chunk's start (pages joined by
    "\\n"); the chunk's own text when no length is asked or the pages are missing."""
    if length is None or length <= len(chunk.text):
        return chunk.text[:length] if length else chunk.text
    length = min(length, MAX_PASSAGE)
    pieces, number = [texts.get(chunk.page_start, "")[chunk.char_start:]], chunk.page_start + 1
    while sum(map(len, pieces)) + len(pieces) - 1 < length and number in texts:
        pieces.append(texts[number])
        number += 1
    joined = "\n".join(pieces)
    return joined[:length] if joined.startswith(chunk.text) else chunk.text


def _boxes_into(out: dict[int, list[Box]], found: Located, chars: Mapping[int, PageChars],
                start: int, end: int | None) -> None:
    for number, raw in found.chars(start, end).items():
        out.setdefault(number, []).extend(line_boxes(chars[number], raw))


def _write_cache_file(path: Path, data: bytes) -> None:
    """Write beside and rename over: a reader never sees half an image. No fsync: a cache
    may lose an image in a crash (a torn one fails :func:`_valid_image` and is redrawn), and
    a flush to disk would cost a cold page more than its rendering on a busy disk."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with disk_full_as_error(path.parent):
            tmp.write_bytes(data)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _valid_image(path: Path) -> bool:
    """A whole JPEG: its start marker first and its end marker last."""
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
            fh.seek(-2, os.SEEK_END)
            return head == JPEG_START and fh.read() == JPEG_END
    except OSError:
        return False
