"""A PDF page as the reader sees it: rendered to an image, and the characters of a passage
found on it (their boxes, for highlighting).

The library stores normalised text (``ingest.extract``: NFKC, ligatures expanded, words split
by a line-end hyphen joined, running headers, page numbers and the arXiv stamp removed,
whitespace collapsed). To find a passage on the page, both the passage and pdfium's raw
characters of the page are reduced to *keys*: each character compatibility-decomposed
(NFKD: "ﬁ" -> "fi"), accents, whitespace, hyphens and control characters dropped,
case-folded. Every key character remembers the raw character it came from (a ligature's
two key characters share one), so a match in keys is a set of pdfium characters, whose
boxes make the highlight. A passage's part on each page is looked up as one string first;
when that fails (a word hyphenated over a page break was moved to the earlier page, a
footnote mark inside the passage) the parts are aligned block by block and the characters
of the passage that no block covers are reported as missed.

pdfium is not thread-safe: every call into it here holds :data:`PDFIUM_LOCK`.
"""

from __future__ import annotations

import ctypes
import difflib
import io
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from core.errors import PdfError
from ingest.extract import STAMP_RE

PDFIUM_LOCK = threading.RLock()
HYPHENS = frozenset("-\u00ad\ufffe\u2010\u2011")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200d\ufeff\ufffd]")
ANCHOR = 16  # key characters used to place a part that is not found whole
MIN_BLOCK = 3  # aligned blocks shorter than this are chance matches
MAX_MOVED = 40  # longest word end moved from the next page by the extractor's hyphen join
HEAD_KEYS = 400  # key characters at the top of a page searched for it (a running header)
MOVED_WORD = "word hyphenated over a page break"
SCALES = (1.0, 1.5, 2.0, 3.0)  # render scales served (72 dpi times this)


@lru_cache(maxsize=1 << 16)
def char_key(ch: str) -> str:
    """The matching key of one character ("" for whitespace, hyphens and controls)."""
    if ch in HYPHENS or ch.isspace() or _CONTROL.match(ch):
        return ""
    out = "".join(c for c in unicodedata.normalize("NFKD", ch)
                  if not unicodedata.combining(c) and not c.isspace() and c not in HYPHENS)
    return out.casefold()


def keyed(text: str) -> tuple[str, np.ndarray]:
    """(keys of ``text``, index in ``text`` of the character each key character came from)."""
    keys: list[str] = []
    owner: list[int] = []
    for i, ch in enumerate(text):
        k = char_key(ch)
        if k:
            keys.append(k)
            owner.extend([i] * len(k))
    return "".join(keys), np.asarray(owner, dtype=np.int32)


@dataclass(frozen=True)
class PageChars:
    """pdfium's characters of one page: their text, keys and boxes. Boxes are fractions of
    the rendered page (x0, y0, x1, y1, origin top-left; NaN where pdfium has none)."""

    number: int
    raw: str
    keys: str
    owner: np.ndarray  # raw index of each key character
    boxes: np.ndarray  # (len(raw), 4) float32
    aspect: float  # height / width of the rendered page


@dataclass
class Located:
    """Where a passage is on its pages. ``pieces`` are the matched blocks: (page, offsets in
    the passage, raw character indices on the page) of each block's key characters;
    ``missed`` the passage's runs that no block covers (offsets into the passage)."""

    pieces: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    key_total: int = 0
    key_found: int = 0
    missed: list[tuple[int, int]] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)  # why a part was not found whole

    @property
    def complete(self) -> bool:
        return self.key_total > 0 and self.key_found == self.key_total

    def chars(self, start: int = 0, end: int | None = None) -> dict[int, np.ndarray]:
        """Raw character indices per page of the passage's span ``start:end`` (all of it by
        default); the whitespace and hyphens between a block's characters are included."""
        stop = end if end is not None else 1 << 62
        runs: dict[int, list[np.ndarray]] = {}
        for page, offsets, raw in self.pieces:
            sel = raw[(offsets >= start) & (offsets < stop)]
            if len(sel):
                runs.setdefault(page, []).append(np.arange(sel.min(), sel.max() + 1))
        return {p: np.unique(np.concatenate(r)) for p, r in sorted(runs.items())}


class PdfPages:
    """An open PDF (the library's copy): page count, characters and rendering. Close it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with PDFIUM_LOCK:
            try:
                self.doc = pdfium.PdfDocument(self.path)
            except pdfium.PdfiumError as err:
                raise PdfError(f"{self.path} cannot be opened ({err}).",
                               "Ingest the paper again.") from err
            self.count = len(self.doc)

    def close(self) -> None:
        with PDFIUM_LOCK:
            self.doc.close()

    def __enter__(self) -> PdfPages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _page(self, number: int) -> pdfium.PdfPage:
        if not 1 <= number <= self.count:
            raise PdfError(f"{self.path.name} has no page {number} (it has {self.count}).",
                           "Ask for a page from 1 to the page count.")
        return self.doc[number - 1]

    def chars(self, number: int) -> PageChars:
        """The characters of page ``number`` (1-based) with their keys and boxes."""
        with PDFIUM_LOCK:
            page = self._page(number)
            try:
                textpage = page.get_textpage()
                try:
                    raw = _raw_text(textpage)
                    boxes = _boxes(page, textpage, len(raw))
                finally:
                    textpage.close()
                width, height = page.get_size()
            finally:
                page.close()
        keys, owner = keyed(raw)
        return PageChars(number, raw, keys, owner, boxes, height / width if width else 1.0)

    def render(self, number: int, scale: float) -> Image.Image:
        """Page ``number`` as an image at ``scale`` x 72 dpi, without the PDF's annotations
        (a reader's own highlights in the file would pass for the viewer's)."""
        with PDFIUM_LOCK:
            page = self._page(number)
            try:
                return page.render(scale=scale, may_draw_forms=False,
                                   draw_annots=False).to_pil()
            finally:
                page.close()


def to_jpeg(image: Image.Image) -> bytes:
    """JPEG bytes at quality 90 without chroma subsampling: text looks as sharp as in a PNG
    at 144 dpi, and encoding takes about a tenth of PNG's (measured: a page at 2x, 6-20 ms
    against 40-60 ms at PNG's fastest level, the largest share of a cold page)."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=90, subsampling=0)
    return out.getvalue()


def _raw_text(textpage: pdfium.PdfTextPage) -> str:
    """One character per pdfium character index. pdfium keeps a character beyond the BMP
    (a mathematical italic "𝑁") as two indices, its UTF-16 halves: the first gets the
    character, the second a zero-width space (no key)."""
    units = [pdfium_c.FPDFText_GetUnicode(textpage.raw, i) for i in range(textpage.count_chars())]
    out: list[str] = []
    i = 0
    while i < len(units):
        u = units[i]
        low = units[i + 1] if i + 1 < len(units) else 0
        if 0xD800 <= u <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
            out += [chr(0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)), "\u200b"]
            i += 2
            continue
        out.append("\ufffd" if 0xD800 <= u <= 0xDFFF or u > 0x10FFFF else chr(u))
        i += 1
    return "".join(out)


def _boxes(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage, n: int) -> np.ndarray:
    """Loose boxes of every character as fractions of the rendered page (NaN: none)."""
    out = np.full((n, 4), np.nan, dtype=np.float32)
    rect = pdfium_c.FS_RECTF()
    for i in range(n):
        if pdfium_c.FPDFText_GetLooseCharBox(textpage.raw, i, ctypes.byref(rect)):
            out[i] = (rect.left, rect.top, rect.right, rect.bottom)
    return _to_fractions(page, out)


def _to_fractions(page: pdfium.PdfPage, boxes: np.ndarray) -> np.ndarray:
    """Page space (points, y up) -> fractions of the rendered page (y down), through pdfium's
    own page-to-device mapping (crop box and /Rotate included)."""
    size = 1_000_000
    dx, dy = ctypes.c_int(), ctypes.c_int()
    corners = []
    for x, y in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, size, size, 0, x, y,
                                   ctypes.byref(dx), ctypes.byref(dy))
        corners.append((dx.value / size, dy.value / size))
    (ox, oy), (ax, ay), (bx, by) = corners
    # fraction = origin + x * (a - origin) + y * (b - origin)
    ux, uy, vx, vy = ax - ox, ay - oy, bx - ox, by - oy
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    fx0, fy0 = ox + x0 * ux + y0 * vx, oy + x0 * uy + y0 * vy
    fx1, fy1 = ox + x1 * ux + y1 * vx, oy + x1 * uy + y1 * vy
    return np.stack([np.minimum(fx0, fx1), np.minimum(fy0, fy1),
                     np.maximum(fx0, fx1), np.maximum(fy0, fy1)], axis=1).astype(np.float32)


# ------------------------------------------------------------------ locating


def passage_parts(pages: Mapping[int, str], first_page: int, char_start: int,
                  text: str) -> list[tuple[int, int, int]]:
    """(page, start, end) of the passage's part on each page: offsets into ``text``, which
    starts at ``char_start`` of page ``first_page`` and runs on through the following pages
    (joined by "\\n", as the chunker joins them). A passage that does not sit there (a merged
    passage whose overlap was not found) is all on ``first_page``."""
    parts: list[tuple[int, int, int]] = []
    number, offset, pos = first_page, char_start, 0
    while pos < len(text) and number in pages:
        page_text = pages[number]
        take = max(0, min(len(text) - pos, len(page_text) - offset))
        if page_text[offset:offset + take] != text[pos:pos + take]:
            return [(first_page, 0, len(text))]
        if take:
            parts.append((number, pos, pos + take))
        pos += take + 1  # the "\n" between pages
        number, offset = number + 1, 0
    if pos < len(text):
        return [(first_page, 0, len(text))]
    return parts


def locate(doc_chars: Mapping[int, PageChars], parts: list[tuple[int, int, int]],
           text: str) -> Located:
    """Find the passage ``text`` (cut into ``parts``, see :func:`passage_parts`) among the
    characters of its pages (``doc_chars``: page number -> characters)."""
    result = Located()
    for number, start, end in parts:
        page = doc_chars.get(number)
        seg_keys, seg_owner = keyed(text[start:end])
        result.key_total += len(seg_keys)
        found = np.zeros(len(seg_keys), dtype=bool)
        blocks = _find(seg_keys, page.keys) if page is not None and seg_keys else []
        for s, k, size in blocks:
            assert page is not None
            found[s:s + size] = True
            result.pieces.append((number, start + seg_owner[s:s + size],
                                  page.owner[k:k + size]))
        if page is not None and len(blocks) > 1:
            result.repairs += [_gap_cause(page, a, b) for a, b in pairwise(blocks)]
        if len(seg_keys) and not found[-1]:
            _moved_tail(doc_chars.get(number + 1), seg_keys, seg_owner, start, found, result)
        result.key_found += int(found.sum())
        result.missed.extend(_runs(~found, seg_owner, start))
    return result


def _moved_tail(nxt: PageChars | None, seg: str, owner: np.ndarray, start: int,
                found: np.ndarray, result: Located) -> None:
    """A word hyphenated over a page break is joined on the earlier page ("Addition-" +
    "ally," -> "Additionally,"): look for a short unmatched end of the part at the top of
    the next page (after its running header) and take it from there."""
    hit = np.flatnonzero(found)
    first = int(hit[-1]) + 1 if len(hit) else 0
    tail = seg[first:]
    if nxt is None or not tail or len(tail) > MAX_MOVED:
        return
    pos = nxt.keys.find(tail, 0, HEAD_KEYS + len(tail))
    if pos >= 0:
        found[first:] = True
        result.pieces.append((nxt.number, start + owner[first:], nxt.owner[pos:pos + len(tail)]))
        result.repairs.append(MOVED_WORD)


def _gap_cause(page: PageChars, a: tuple[int, int, int], b: tuple[int, int, int]) -> str:
    """Why the page has characters between two aligned blocks that the passage lacks."""
    gap = page.raw[int(page.owner[a[1] + a[2] - 1]) + 1:int(page.owner[b[1]])]
    words = " ".join(gap.split())
    if STAMP_RE.search(words) or STAMP_RE.search(words[::-1]):
        return "arXiv stamp removed"
    if re.fullmatch(r"[\d\s.,*†‡§¶]*", words):
        return "page number or note mark removed"
    return "running header or footer removed" if words else "characters the extractor dropped"


def _find(seg: str, hay: str) -> list[tuple[int, int, int]]:
    """Blocks (segment position, haystack position, size) matching ``seg`` in ``hay``."""
    pos = hay.find(seg)
    if pos >= 0:
        return [(0, pos, len(seg))]
    lo, hi = _window(seg, hay)
    matcher = difflib.SequenceMatcher(None, seg, hay[lo:hi], autojunk=False)
    return [(a, lo + b, size) for a, b, size in matcher.get_matching_blocks()
            if size >= MIN_BLOCK]


def _window(seg: str, hay: str) -> tuple[int, int]:
    """The stretch of ``hay`` where ``seg`` should be: from its first anchor found to its
    last (with slack); the whole page when no anchor is found."""
    first = last = -1
    for i in range(0, len(seg) - ANCHOR + 1, ANCHOR):
        pos = hay.find(seg[i:i + ANCHOR])
        if pos >= 0:
            first = pos - i
            break
    for i in range(len(seg), ANCHOR - 1, -ANCHOR):
        pos = hay.rfind(seg[i - ANCHOR:i])
        if pos >= 0:
            last = pos + ANCHOR + (len(seg) - i)
            break
    slack = max(200, len(seg) // 2)
    lo, hi = max(0, first - slack), min(len(hay), max(last, first + len(seg)) + slack)
    return (lo, hi) if first >= -len(seg) and last >= 0 and hi > lo else (0, len(hay))


def _runs(missed: np.ndarray, owner: np.ndarray, base: int) -> list[tuple[int, int]]:
    """Passage offsets (start, end) of the runs of missed key characters."""
    out: list[tuple[int, int]] = []
    idx = np.flatnonzero(missed)
    if not len(idx):
        return out
    breaks = np.flatnonzero(np.diff(idx) > 1)
    for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, len(idx) - 1], strict=True):
        out.append((base + int(owner[idx[a]]), base + int(owner[idx[b]]) + 1))
    return out


# ------------------------------------------------------------------ highlight boxes


def line_boxes(page: PageChars, raw_indices: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Highlight rectangles (fractions of the page) over the characters ``raw_indices``: one
    per run of consecutive characters on one line."""
    rects: list[tuple[float, float, float, float]] = []
    current: list[float] | None = None
    last = -2
    for i in raw_indices.tolist():
        box = page.boxes[i]
        ch = page.raw[i]
        if ch.isspace() or np.isnan(box[0]) or box[2] <= box[0]:
            if ch in "\r\n":
                last = -2  # a line break ends the rectangle
            continue
        x0, y0, x1, y1 = (float(v) for v in box)
        same_line = (current is not None and i - last <= 2 and
                     abs((y0 + y1) / 2 - (current[1] + current[3]) / 2)
                     < 0.5 * max(y1 - y0, current[3] - current[1]) and x0 >= current[0] - 0.01)
        if same_line and current is not None:
            current = [min(current[0], x0), min(current[1], y0), max(current[2], x1),
                       max(current[3], y1)]
        else:
            if current is not None:
                rects.append((current[0], current[1], current[2], current[3]))
            current = [x0, y0, x1, y1]
        last = i
    if current is not None:
        rects.append((current[0], current[1], current[2], current[3]))
    return rects
