"""Locating passages on real PDF pages (ingest/pages.py): the characters pdfium reads, the
keys that survive the extractor's normalisation, every chunk of real papers found on its
pages, and highlight boxes that cover the passage's words as pdfium's own search finds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest

from core.types import Chunk
from ingest import extract
from ingest.pages import (
    MOVED_WORD,
    PageChars,
    PdfPages,
    char_key,
    keyed,
    line_boxes,
    locate,
    passage_parts,
)
from ingest.pageview import passage_text
from ingest.pipeline import make_chunker
from tests.helpers import CORPUS_PDFS, make_settings


def test_keys_drop_what_the_extractor_changes() -> None:
    assert char_key("ﬁ") == "fi" and char_key("ﬀ") == "ff"  # ligatures
    assert char_key("-") == char_key("\u00ad") == char_key("\ufffe") == ""  # hyphens
    assert char_key(" ") == char_key("\n") == char_key("\x02") == ""
    assert char_key("É") == "e" and char_key("𝑁") == "n"  # accents, math italic
    keys, owner = keyed("Trans-\nformer ﬁne")
    assert keys == "transformerfine"
    assert owner.tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 14, 14, 15, 16]


def test_passage_parts_follow_the_page_join() -> None:
    pages = {1: "Alpha beta.\nGamma", 2: "delta epsilon.", 3: "Zeta."}
    text = "Gamma\ndelta epsilon.\nZe"
    assert passage_parts(pages, 1, 12, text) == [(1, 0, 5), (2, 6, 20), (3, 21, 23)]
    assert passage_parts(pages, 1, 0, "not there") == [(1, 0, 9)]  # placed on its first page
    chunk = Chunk(paper_id="p", ordinal=0, text="Gamma\ndel", page_start=1, page_end=2,
                  char_start=12, char_end=21)
    assert passage_text(chunk, pages, None) == "Gamma\ndel"
    assert passage_text(chunk, pages, 14) == "Gamma\ndelta ep"  # a merged, longer passage


def test_raw_characters_keep_one_entry_per_pdfium_index() -> None:
    """FlashAttention's formulas use mathematical italic letters beyond the BMP, which
    pdfium counts as two characters each."""
    with PdfPages(CORPUS_PDFS / "2205.14135.pdf") as doc:
        page = doc.chars(6)
        doc_pdf = pdfium.PdfDocument(CORPUS_PDFS / "2205.14135.pdf")
        try:
            count = doc_pdf[5].get_textpage().count_chars()
        finally:
            doc_pdf.close()
    assert len(page.raw) == count == len(page.boxes)
    assert "𝑁" in page.raw and "n" in page.keys
    assert np.all(page.boxes[~np.isnan(page.boxes[:, 0])] >= -0.01)


def chunks_of(pdf: Path) -> tuple[list[Chunk], dict[int, str]]:
    pages = extract.extract_pages(pdf, pdf.stem)
    chunker = make_chunker(make_settings(Path("/nonexistent")))
    return chunker.chunk(pdf.stem, pages), {p.number: p.text for p in pages}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["1706.03762", "2205.14135", "2304.01373"])
def test_every_chunk_of_a_paper_is_found_on_its_pages(name: str) -> None:
    """The Transformer, FlashAttention (formulas) and Pythia (a word hyphenated over a
    page break, "Addition-" / "ally,", which the extractor joins on the earlier page)."""
    chunks, texts = chunks_of(CORPUS_PDFS / f"{name}.pdf")
    with PdfPages(CORPUS_PDFS / f"{name}.pdf") as doc:
        chars = {n: doc.chars(n) for n in range(1, doc.count + 1)}
    repairs: list[str] = []
    for c in chunks:
        parts = passage_parts(texts, c.page_start, c.char_start, c.text)
        found = locate(chars, parts, c.text)
        assert found.complete, (c.ordinal, [c.text[a:b] for a, b in found.missed])
        on_pages = set(found.chars())
        assert {n for n, _, _ in parts} <= on_pages  # a chunk over two pages: both
        repairs += found.repairs
    if name == "2304.01373":  # the end of "Additionally," found on the next page
        assert MOVED_WORD in repairs


def word_boxes(pdf: Path, number: int, word: str) -> list[tuple[float, float, float, float]]:
    """The tight character boxes of ``word`` on the page, found by pdfium's own search,
    as fractions of the page (these pages have no rotation and a crop box at 0, 0)."""
    doc = pdfium.PdfDocument(pdf)
    try:
        page = doc[number - 1]
        width, height = page.get_size()
        textpage = page.get_textpage()
        searcher = textpage.search(word, match_case=True, match_whole_word=True)
        hit = searcher.get_next()
        assert hit is not None and searcher.get_next() is None, f"{word!r} not once on the page"
        start, count = hit
        out = []
        for i in range(start, start + count):
            left, bottom, right, top = textpage.get_charbox(i)
            out.append((left / width, 1 - top / height, right / width, 1 - bottom / height))
        return out
    finally:
        doc.close()


def inside(box: tuple[float, ...], rects: list[tuple[float, float, float, float]]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(r[0] <= cx <= r[2] and r[1] <= cy <= r[3] for r in rects)


def test_highlight_boxes_cover_the_passage_words_and_nothing_else() -> None:
    """Section 3.2.3 of the Transformer paper (page 5): every character of its words lies
    in a highlight rectangle; words of the next section do not."""
    pdf = CORPUS_PDFS / "1706.03762.pdf"
    with PdfPages(pdf) as doc:
        page: PageChars = doc.chars(5)
    start = page.raw.index("3.2.3")
    end = page.raw.index("3.3", start)
    text = " ".join(page.raw[start:end].split())  # what a chunk holds, reflowed
    found = locate({5: page}, [(5, 0, len(text))], text)
    assert found.complete
    rects = line_boxes(page, found.chars()[5])
    assert 8 <= len(rects) <= 20  # one a line, not one a character
    for word in ("Applications", "auto-regressive", "sequence-to-sequence", "leftward"):
        assert all(inside(b, rects) for b in word_boxes(pdf, 5, word)), word
    assert not any(inside(b, rects) for b in word_boxes(pdf, 5, "Position-wise"))
    sentence = text.index("In a self-attention layer")
    strong = line_boxes(page, found.chars(sentence, sentence + 60)[5])
    assert all(inside(b, strong) for b in word_boxes(pdf, 5, "In a self-attention layer"))
    assert not any(inside(b, strong) for b in word_boxes(pdf, 5, "Applications"))
