"""PDF -> normalised pages (one ``Page`` per PDF page, 1-based).

Two extractors: ``pypdfium2`` (default: about 20x faster on the corpus and it keeps symbols
such as the "×" in FlashAttention's "3× faster", which pypdf turns into a control character)
and ``pypdf`` (pure Python). Both read the corpus' two-column papers column by column.

``normalise_page_texts`` is the pure text clean-up shared by both: NFKC (ligatures such as
"ﬁ" become "fi"), words hyphenated across line ends joined, running headers/footers, page
numbers and the arXiv side stamp removed, whitespace collapsed; line breaks are kept (the
chunker detects headings on them) and likely paragraph ends become blank lines.

``extract_pages`` and ``extract_document`` are top-level functions so they can run in a
worker process. ``extract_document`` is what ingest runs there: the pages, the raw page-1
arXiv stamp, the info dictionary and the flags (``hidden-text``) from one read of the file,
so the main process never parses a PDF that might be hostile.

Untrusted text is made plain here (:mod:`core.confusables`): invisible characters (zero-width,
word joiner, bidi controls) are stripped and Cyrillic/Greek look-alikes inside Latin words
folded, so "Ig\u2060nоre" (with a word joiner and a Cyrillic о) is stored as "Ignore".

Hidden text: letters drawn invisibly (text render mode 3 or 7), with no fill (alpha 0), in
white directly on the page (white labels in a figure's form on a dark box are common),
smaller than 1 pt (a zero-size font draws nothing pdfium keeps; a tiny text matrix does), or
outside the page. A run of ``HIDDEN_MIN_LETTERS`` of them on a page (a sentence, not a stray
label) flags the paper ``hidden-text`` (the UI shows a badge; none of the 15 corpus papers
is flagged). The text is kept (an OCR layer over a scan is invisible text too), and the
prompt's defences apply to it like to any other.
"""

from __future__ import annotations

import bisect
import ctypes
import logging
import math
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadWarning, PyPdfError

from core.confusables import fold_confusables, strip_invisible
from core.errors import PdfError, SourceNotFoundError
from core.types import Page

log = logging.getLogger(__name__)

EXTRACTORS = ("pypdf", "pypdfium2")
MIN_CHARS_PER_PAGE = 25  # fewer letters/digits than this per page on average: no text layer
_EDGE_LINES = 3  # lines at the top and bottom of a page searched for headers/footers

# "arXiv:1706.03762v7 [cs.CL] 2 Aug 2023"; spaces optional (vertical renderings lose them).
STAMP_RE = re.compile(
    r"arXiv:\s*(?P<id>\d{4}\.\d{4,5}|[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<v>\d+))?"
    r"\s*\[[^\]\n]{1,20}\]\s*\d{1,2}\s*[A-Z][a-z]{2}\s*\d{4}"
)
HIDDEN_MIN_LETTERS = 16  # a run of this many hidden letters flags a paper "hidden-text"
HIDDEN_TEXT = "hidden-text"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200d\ufeff\ufffd]")
_WORD_RE = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


# ---------------------------------------------------------------- public API


def extract_pages(path: Path, paper_id: str, extractor: str = "pypdfium2") -> list[Page]:
    """Normalised text of every page of the PDF at ``path`` (empty pages included).

    Raises ``PdfError`` (not a PDF, truncated/corrupt, encrypted, no text layer) and
    ``SourceNotFoundError`` (no such file).
    """
    path = Path(path)
    _check_file(path)
    if extractor not in _RAW_EXTRACTORS:
        raise PdfError(f"Unknown PDF extractor {extractor!r};", f"use one of {EXTRACTORS}.")
    return _pages(path, paper_id, _RAW_EXTRACTORS[extractor](path))


@dataclass
class Extracted:
    """What ingest needs from one read of a PDF (see :func:`extract_document`)."""

    pages: list[Page]
    stamp: tuple[str, int | None] | None  # the arXiv id and version on page 1, if any
    info: dict[str, Any] = field(default_factory=dict)  # as :func:`pdf_metadata` gives it
    flags: tuple[str, ...] = ()
    hidden_letters: int = 0  # the longest run of hidden letters on a page


def extract_document(path: Path, paper_id: str, extractor: str = "pypdfium2",
                     max_pages: int = 0) -> Extracted:
    """Pages (as :func:`extract_pages`), page-1 stamp, info and flags of the PDF at
    ``path``; a PDF of more than ``max_pages`` pages (0: any) is refused with ``PdfError``."""
    path = Path(path)
    _check_file(path)
    if extractor not in _RAW_EXTRACTORS:
        raise PdfError(f"Unknown PDF extractor {extractor!r};", f"use one of {EXTRACTORS}.")
    doc = _open_pdfium(path)
    try:
        _check_page_count(path, len(doc), max_pages)
        read = [_page_text_and_hidden(doc, i, path) for i in range(len(doc))]
        raw = [text for text, _ in read]
        hidden = max((run for _, run in read), default=0)
        info = _clean_info(doc.get_metadata_dict())
    finally:
        doc.close()
    if extractor != "pypdfium2":
        raw = _RAW_EXTRACTORS[extractor](path)
    stamp = arxiv_id_from_stamp(raw[0]) if raw else None
    pages = _pages(path, paper_id, raw)
    flags = (HIDDEN_TEXT,) if hidden >= HIDDEN_MIN_LETTERS else ()
    return Extracted(pages, stamp, info, flags, hidden)


def _check_page_count(path: Path, pages: int, max_pages: int) -> None:
    if max_pages and pages > max_pages:
        raise PdfError(f"{path} has {pages} pages, more than ingest.max_pages ({max_pages}).",
                       "Raise ingest.max_pages to accept it.")


def _pages(path: Path, paper_id: str, raw: list[str]) -> list[Page]:
    texts = normalise_page_texts(raw)
    letters = sum(ch.isalnum() for text in texts for ch in text)
    if letters < MIN_CHARS_PER_PAGE * max(len(texts), 2):
        raise PdfError(f"{path} has no text layer (a scanned or image-only PDF); "
                       "OCR is not supported.", "Ingest a PDF with selectable text instead.")
    return [Page(paper_id, number, text) for number, text in enumerate(texts, start=1)]


def pdf_metadata(path: Path) -> dict[str, Any]:
    """The PDF info dictionary, cleaned: ``title`` (str, "" when missing or a file name),
    ``author`` (str), ``authors`` (tuple of names) and ``year`` (creation year or None)."""
    path = Path(path)
    _check_file(path)
    doc = _open_pdfium(path)
    try:
        return _clean_info(doc.get_metadata_dict())
    finally:
        doc.close()


def _clean_info(info: dict[str, Any]) -> dict[str, Any]:
    title = " ".join(str(info.get("Title", "")).split())
    if re.search(r"(?i)^(untitled|microsoft word\b)|\.(dvi|pdf|tex|docx?)$", title) or not any(
        ch.isalpha() for ch in title
    ):
        title = ""
    author = " ".join(str(info.get("Author", "")).split())
    authors = tuple(a.strip() for a in re.split(r";|,| and ", author) if a.strip())
    year_match = re.match(r"D?:?(\d{4})", str(info.get("CreationDate", "")))
    year = int(year_match.group(1)) if year_match else None
    return {"title": title, "author": author, "authors": authors,
            "year": year if year and 1900 < year < 2200 else None}


def arxiv_id_from_stamp(page1_text: str) -> tuple[str, int | None] | None:
    """(arXiv id without version, version or None) from the arXiv side stamp, read forwards,
    reversed or vertically (one character per line). Give it the *raw* page-1 text (see
    ``arxiv_stamp_of_pdf``): ``normalise_page_texts`` removes the stamp."""
    text = unicodedata.normalize("NFKC", page1_text)
    vertical = "".join(line.strip() for line in text.splitlines() if len(line.strip()) <= 2)
    for candidate in (text, text[::-1], vertical, vertical[::-1]):
        match = STAMP_RE.search(candidate)
        if match:
            version = match.group("v")
            return match.group("id"), int(version) if version else None
    return None


def arxiv_stamp_of_pdf(path: Path) -> tuple[str, int | None] | None:
    """``arxiv_id_from_stamp`` on the raw text of page 1 of the PDF at ``path``."""
    path = Path(path)
    _check_file(path)
    doc = _open_pdfium(path)
    try:
        text = _pdfium_page_text(doc, 0, path) if len(doc) else ""
    finally:
        doc.close()
    return arxiv_id_from_stamp(text)


_TITLE_SKIP = re.compile(
    r"(?i)^(published|preprint|proceedings|under review|accepted|appears|in proceedings|"
    r"provided proper|copyright|arxiv|workshop|draft|technical report)|@|https?://|www\.|©"
)
_TITLE_JOINERS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "of", "on",
                  "the", "to", "via", "with", "without", "through", "towards", "across", "using",
                  "beyond", "is", "are", "or", "vs", "versus", "over", "under"}


def first_page_title(page1_text: str) -> str:
    """A best guess at the title from page-1 text: the first title-like line among the
    first 15 (skipping venue notices, stamps, e-mails), joined with the lines that continue
    it ("BERT: ... Transformers for" + "Language Understanding"). "" when nothing fits."""
    lines = [" ".join(line.split()) for line in page1_text.splitlines()]
    lines = [line for line in lines if line][:15]
    for i, line in enumerate(lines):
        if _looks_like_title_start(line):
            parts = [line]
            for nxt in lines[i + 1 : i + 4]:
                if not _continues_title(parts[-1], nxt):
                    break
                parts.append(nxt)
            return " ".join(parts)
    return ""


def _looks_like_title_start(line: str) -> bool:
    words = line.split()
    return (
        line[0].isupper()
        and 1 <= len(words) <= 20
        and not line.endswith((".", ","))
        and not _TITLE_SKIP.search(line)
        and not STAMP_RE.search(line)
        and not re.search(r"[∗†‡*]|\d{2,}", line)
        and sum(ch.isalpha() for ch in line) >= 0.6 * len(line.replace(" ", ""))
    )


def _looks_like_authors(line: str) -> bool:
    """"John Schulman, Filip Wolski, ..." or "Jane Doe and John Roe": every part a name."""
    parts = [p.strip() for p in re.split(r",|\band\b", line) if p.strip()]
    return all(2 <= len(p.split()) <= 4 and p.istitle() for p in parts)


def _continues_title(prev: str, nxt: str) -> bool:
    if _TITLE_SKIP.search(nxt) or re.search(r"[∗†‡*@]", nxt) or nxt.endswith((".", ",")):
        return False
    words = nxt.split()
    if (prev.endswith((":", "-")) or prev.split()[-1].lower() in _TITLE_JOINERS
            or words[0][0].islower() or words[0].lower() in _TITLE_JOINERS):
        return True
    # a long first line that wrapped: "...Pre-training for Natural" + "Language Generation, ..."
    if len(prev) < 40 or _looks_like_authors(nxt):
        return False
    return (prev.isupper() and nxt.isupper()) or any(w in _TITLE_JOINERS for w in words)


# ------------------------------------------------------------- normalisation


def normalise_page_texts(texts: list[str]) -> list[str]:
    """Clean the raw texts of all pages of one document (document-wide: running headers and
    hyphenation use every page). Returns one string per input page."""
    pages = [_clean_lines(_clean_chars(text)) for text in texts]
    pages = [_remove_stamp(lines) for lines in pages]
    pages = _remove_running_lines(pages)
    vocabulary = _Vocabulary(pages)
    pages = [_join_hyphenated(lines, vocabulary) for lines in pages]
    _join_hyphen_across_pages(pages, vocabulary)
    return [_with_paragraph_breaks(lines) for lines in pages]


def _clean_chars(text: str) -> str:
    """NFKC, one kind of newline; pdfium's U+FFFE (a hyphen it took for a soft one, with
    the line break dropped) and a soft hyphen at a line end become "-\\n"; control
    characters, other soft hyphens and invisible characters go; look-alike letters inside
    Latin words become Latin."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = text.replace("\ufffe", "-\n").replace("\u00ad\n", "-\n").replace("\t", " ")
    return fold_confusables(strip_invisible(_CONTROL_RE.sub("", text)))


def _clean_lines(text: str) -> list[str]:
    """Lines with runs of spaces collapsed; "" marks a blank line (at most one in a row)."""
    out: list[str] = []
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def _strip_stamp(line: str) -> str:
    for text, flip in ((line, False), (line[::-1], True)):
        if STAMP_RE.search(text):
            kept = " ".join(STAMP_RE.sub(" ", text).split())
            return kept[::-1] if flip else kept
    return line


def _remove_stamp(lines: list[str]) -> list[str]:
    """Drop the arXiv side stamp: on one line (forwards or reversed) or spread over a run of
    one-character lines (rendered vertically)."""
    out = [kept for line in lines if (kept := _strip_stamp(line)) or not line]
    return _remove_vertical_stamp(out)


def _remove_vertical_stamp(lines: list[str]) -> list[str]:
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and 0 < len(lines[j]) <= 2:
            j += 1
        if j - i >= 10:
            joined = "".join(lines[i:j])
            if STAMP_RE.search(joined) or STAMP_RE.search(joined[::-1]):
                lines = lines[:i] + lines[j:]
                continue
        i = j + 1
    return lines


def _line_key(line: str) -> str:
    """Header/footer identity: case and digits ignored ("Page 3" == "Page 4")."""
    return re.sub(r"\d+", "#", line.lower())


def _edge_indexes(lines: list[str]) -> tuple[list[int], list[int]]:
    """Indexes of the top and bottom lines (fewer on short pages, so the zones stay apart)."""
    filled = [i for i, line in enumerate(lines) if line]
    k = max(1, min(_EDGE_LINES, len(filled) // 4))
    return filled[:k], filled[-k:][::-1]


def _remove_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Remove lines found at the top or bottom of most pages (running titles, venue lines,
    page numbers: a bare number has key "#"). Page 1 keeps its top lines (often the title)."""
    if len(pages) < 3:
        return pages
    counts: Counter[str] = Counter()
    for lines in pages:
        top, bottom = _edge_indexes(lines)
        counts.update({_line_key(lines[i]) for i in top + bottom})
    running = {key for key, n in counts.items() if n >= max(3, math.ceil(0.5 * len(pages)))}
    out = []
    for number, lines in enumerate(pages, start=1):
        top, bottom = _edge_indexes(lines)
        zone = bottom if number == 1 else top + bottom
        drop = {i for i in zone if _line_key(lines[i]) in running}
        out.append([line for i, line in enumerate(lines) if i not in drop])
    return out


class _Vocabulary:
    """Lower-cased words and hyphenated compounds seen inside lines (a line-end hyphen is
    left out), counted, with counts of all words sharing a prefix."""

    def __init__(self, pages: list[list[str]]) -> None:
        counts: Counter[str] = Counter()
        for lines in pages:
            for line in lines:
                counts.update(w.lower() for w in _WORD_RE.findall(line.rstrip("-")))
        self.counts = counts
        self.keys = sorted(counts)
        self.cumulative = list(accumulate((counts[k] for k in self.keys), initial=0))

    def prefixed(self, prefix: str) -> int:
        lo = bisect.bisect_left(self.keys, prefix)
        hi = bisect.bisect_left(self.keys, prefix + "\U0010ffff")
        return self.cumulative[hi] - self.cumulative[lo]


def _keep_hyphen(left: str, right: str, vocabulary: _Vocabulary) -> bool:
    """Is "left-" + newline + "right" a real compound (keep "-") rather than a word split
    by hyphenation? The document's own spelling decides: the same word ("pre-training" vs
    "pretraining"), else words of the same start ("pre-trained" for "pre-\\ntrains").
    Without evidence a split word joins, unless the right part is capitalised
    ("Transformer-XL") or a number ("GPT-3")."""
    if "-" in left or "-" in right or not (left.isalpha() and right[:1].isalpha()):
        return True  # "GPT-3", "left-to-right", "English-to-German"
    joined, compound = (left + right).lower(), f"{left}-{right}".lower()
    n = len(left) + 4
    for hyphenated, solid in ((vocabulary.counts[compound], vocabulary.counts[joined]),
                              (vocabulary.prefixed(compound[: n + 1]),
                               vocabulary.prefixed(joined[:n]))):
        if hyphenated != solid:
            return hyphenated > solid
    return right[0].isupper() and not (left.isupper() and right.isupper())


_LINE_END_HYPHEN = re.compile(r"(\S*[^\W\d_])-$")
_WORD_START = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def _merge_pair(prev: str, nxt: str, vocabulary: _Vocabulary) -> tuple[str, str] | None:
    """Move the first word of ``nxt`` to the end of ``prev`` when ``prev`` ends with a
    hyphenated word, dropping the hyphen unless it is a real compound; None otherwise."""
    end = _LINE_END_HYPHEN.search(prev)
    token, _, rest = nxt.partition(" ")
    start = _WORD_START.match(token)
    if not end or not start:
        return None
    left = end.group(1).lstrip("([{\"'“‘")
    glue = "-" if _keep_hyphen(left, start.group(0), vocabulary) else ""
    return prev[:-1] + glue + token, rest


def _join_hyphenated(lines: list[str], vocabulary: _Vocabulary) -> list[str]:
    out = list(lines)
    i = 0
    while i < len(out) - 1:
        merged = _merge_pair(out[i], out[i + 1], vocabulary) if out[i + 1] else None
        if merged is None:
            i += 1
            continue
        out[i], out[i + 1] = merged
        if not out[i + 1]:
            del out[i + 1]
    return out


def _join_hyphen_across_pages(pages: list[list[str]], vocabulary: _Vocabulary) -> None:
    """A word split over a page break moves to the earlier page (only when the next page
    starts with a lower-case fragment, i.e. the text really continues)."""
    for prev, nxt in pairwise(pages):
        if prev and nxt and nxt[0][:1].islower():
            merged = _merge_pair(prev[-1], nxt[0], vocabulary)
            if merged is not None:
                prev[-1], nxt[0] = merged
                if not nxt[0]:
                    del nxt[0]


def _with_paragraph_breaks(lines: list[str]) -> str:
    """Join lines; a sentence-final line clearly shorter than the page's full lines, followed
    by a capitalised line, is taken as a paragraph end (blank line after it)."""
    lengths = sorted(len(line) for line in lines if len(line) >= 20)
    full = lengths[int(0.8 * (len(lengths) - 1))] if lengths else 0
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (nxt and line.endswith((".", "!", "?", ".)", ".”", '."')) and len(line) < 0.75 * full
                and (nxt[0].isupper() or nxt[0].isdigit())):
            out.append("")
    return "\n".join(out).strip()


# ------------------------------------------------------------------- reading


def _check_file(path: Path) -> None:
    """Fail fast, with a clear message, on what is not a complete PDF."""
    if not path.is_file():
        raise SourceNotFoundError(f"{path} does not exist or is not a file.", "Check the path.")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(1024)
        fh.seek(max(0, size - 2048))
        tail = fh.read()
    if not head:
        raise PdfError(f"{path} is empty (0 bytes);", "download it again.")
    if b"%PDF-" not in head:
        if re.search(rb"(?i)<!doctype html|<html|<head|<body", head):
            raise PdfError(f"{path} is HTML, not a PDF; the server returned a web page (an error,"
                           " login or captcha page).", "Download the PDF itself and ingest again.")
        raise PdfError(f"{path} is not a PDF (it starts with {head[:8]!r});",
                       "check that you gave the right file.")
    if b"%%EOF" not in tail:
        raise PdfError(f"{path} is truncated or corrupt (no %%EOF end marker);",
                       "download it again.")


def _encrypted(path: Path) -> PdfError:
    return PdfError(f"{path} is encrypted;",
                    "decrypt it (e.g. qpdf --decrypt in.pdf out.pdf) and ingest again.")


def _corrupt(path: Path, detail: object) -> PdfError:
    return PdfError(f"{path} is corrupt ({detail});", "download it again or repair it "
                    "(e.g. qpdf in.pdf out.pdf) and ingest again.")


def _open_pdfium(path: Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as err:
        if err.err_code in (pdfium_raw.FPDF_ERR_PASSWORD, pdfium_raw.FPDF_ERR_SECURITY):
            raise _encrypted(path) from err
        raise _corrupt(path, err) from err


def _pdfium_page_text(doc: pdfium.PdfDocument, index: int, path: Path) -> str:
    try:
        page = doc[index]
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_range())
        finally:
            textpage.close()
            page.close()
    except pdfium.PdfiumError as err:
        raise _corrupt(path, f"page {index + 1}: {err}") from err


_INVISIBLE_MODES = (pdfium_raw.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_raw.FPDF_TEXTRENDERMODE_CLIP)
_FILL_MODES = (pdfium_raw.FPDF_TEXTRENDERMODE_FILL, pdfium_raw.FPDF_TEXTRENDERMODE_FILL_STROKE,
               pdfium_raw.FPDF_TEXTRENDERMODE_FILL_CLIP,
               pdfium_raw.FPDF_TEXTRENDERMODE_FILL_STROKE_CLIP)


# FPDFText_GetTextObject returning the address as an int (no pointer object per letter).
_TEXT_OBJECT_ADDRESS = ctypes.cast(
    pdfium_raw.FPDFText_GetTextObject,
    ctypes.CFUNCTYPE(ctypes.c_void_p, pdfium_raw.FPDF_TEXTPAGE, ctypes.c_int))


def _drawn_hidden(obj: Any, top_level: set[int | None], key: int | None) -> bool:
    """Is this text object drawn so that a reader cannot see it: invisible render mode, no
    fill, or white fill directly on the page (white labels inside a figure's form are
    common: the 15 corpus papers have them, on dark boxes)?"""
    mode = pdfium_raw.FPDFTextObj_GetTextRenderMode(obj)
    if mode in _INVISIBLE_MODES:
        return True
    r, g, b, a = (ctypes.c_uint() for _ in range(4))
    if not (mode in _FILL_MODES and pdfium_raw.FPDFPageObj_GetFillColor(obj, r, g, b, a)):
        return False
    return a.value == 0 or (min(r.value, g.value, b.value) >= 250 and key in top_level)


def _placed_hidden(textpage: Any, i: int, width: float, height: float) -> bool:
    """Is character ``i`` smaller than 1 pt or outside the page?"""
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    if not pdfium_raw.FPDFText_GetCharBox(textpage, i, left, right, bottom, top):
        return False
    if top.value - bottom.value < 1.0 and right.value - left.value < 1.0:
        return True
    return right.value < 0 or left.value > width or top.value < 0 or bottom.value > height


def _page_text_and_hidden(doc: pdfium.PdfDocument, index: int, path: Path) -> tuple[str, int]:
    """The raw text of page ``index`` and its longest run of hidden letters."""
    try:
        page = doc[index]
        textpage = page.get_textpage()
    except pdfium.PdfiumError as err:
        raise _corrupt(path, f"page {index + 1}: {err}") from err
    try:
        text = str(textpage.get_text_range())
        return text, _hidden_run(page, textpage, text)
    except pdfium.PdfiumError as err:
        raise _corrupt(path, f"page {index + 1}: {err}") from err
    finally:
        textpage.close()
        page.close()


def _hidden_run(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage, text: str) -> int:
    """The longest run of hidden letters on a page (in reading order; visible letters end
    a run, spaces and punctuation do not). Each text object is judged once, on its first
    letter: about as long as reading the text."""
    width, height = page.get_size()
    top_level = {ctypes.cast(pdfium_raw.FPDFPage_GetObject(page.raw, j), ctypes.c_void_p)
                 .value for j in range(pdfium_raw.FPDFPage_CountObjects(page.raw))}
    if len(text) != textpage.count_chars():  # characters beyond the BMP: read one by one
        text = "".join(chr(pdfium_raw.FPDFText_GetUnicode(textpage.raw, i))
                       for i in range(textpage.count_chars()))
    longest = run = 0
    last: int | None = None
    hidden = False
    for i, ch in enumerate(text):
        if not ch.isalpha():
            continue
        key = _TEXT_OBJECT_ADDRESS(textpage.raw, i)
        if key != last:
            last = key
            obj = ctypes.cast(ctypes.c_void_p(key), pdfium_raw.FPDF_PAGEOBJECT)
            hidden = key is not None and (_drawn_hidden(obj, top_level, key) or
                                          _placed_hidden(textpage.raw, i, width, height))
        run = run + 1 if hidden else 0
        longest = max(longest, run)
    return longest


def _pdfium_texts(path: Path) -> list[str]:
    doc = _open_pdfium(path)
    try:
        return [_pdfium_page_text(doc, i, path) for i in range(len(doc))]
    finally:
        doc.close()


def _pypdf_texts(path: Path) -> list[str]:
    with _pypdf_messages_to_debug_log():
        try:
            reader = pypdf.PdfReader(path)
            if reader.is_encrypted and not reader.decrypt(""):
                raise _encrypted(path)
            return [page.extract_text() or "" for page in reader.pages]
        except (FileNotDecryptedError, DependencyError) as err:
            raise _encrypted(path) from err
        except (PyPdfError, ValueError, KeyError, IndexError) as err:  # malformed objects
            raise _corrupt(path, err) from err


_RAW_EXTRACTORS: dict[str, Callable[[Path], list[str]]] = {
    "pypdf": _pypdf_texts,
    "pypdfium2": _pdfium_texts,
}


class _ToDebugLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log.debug("pypdf: %s", record.getMessage())


@contextmanager
def _pypdf_messages_to_debug_log() -> Iterator[None]:
    """While pypdf reads, its log records (font warnings, "EOF marker not found") and its
    warnings go to this module's debug log instead of stderr; other libraries' warnings
    are re-emitted unchanged afterwards, and the logging/warnings state is restored."""
    pypdf_log = logging.getLogger("pypdf")
    handler, propagate = _ToDebugLog(), pypdf_log.propagate
    pypdf_log.addHandler(handler)
    pypdf_log.propagate = False
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        pypdf_log.removeHandler(handler)
        pypdf_log.propagate = propagate
        for w in caught:
            if issubclass(w.category, PdfReadWarning) or "pypdf" in Path(w.filename).parts:
                log.debug("pypdf warning: %s", w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                                       source=w.source)
