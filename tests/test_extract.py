"""PDF text extraction on the real corpus PDFs, with both extractors, and every error case
on a real file made in the test."""

from __future__ import annotations

import logging
import pickle
import re
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pypdf
import pypdfium2 as pdfium
import pytest

from core.errors import PdfError, SourceNotFoundError
from core.types import Page
from ingest.extract import (
    EXTRACTORS,
    arxiv_id_from_stamp,
    arxiv_stamp_of_pdf,
    extract_pages,
    first_page_title,
    normalise_page_texts,
    pdf_metadata,
)
from tests.helpers import CORPUS_PDFS

ALL_PDFS = sorted(CORPUS_PDFS.glob("*.pdf"))
ATTENTION = CORPUS_PDFS / "1706.03762.pdf"
BART = CORPUS_PDFS / "1910.13461.pdf"
STAMP = re.compile(r"arXiv:\s*\d{4}\.\d{4,5}v\d+\s*\[")


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[Page]]:
    """Every corpus paper through the default extractor (pypdfium2, ~2 s)."""
    return {p.stem: extract_pages(p, p.stem) for p in ALL_PDFS}


def text_of(pages: list[Page]) -> str:
    return "\n".join(p.text for p in pages)


# ----------------------------------------------------------------- the corpus


def test_corpus_is_there() -> None:
    assert len(ALL_PDFS) == 15, f"expected the 15 corpus PDFs in {CORPUS_PDFS}"


def test_one_page_per_pdf_page(corpus: dict[str, list[Page]]) -> None:
    for pdf in ALL_PDFS:
        pages = corpus[pdf.stem]
        assert len(pages) == len(pypdf.PdfReader(pdf).pages), pdf.name
        assert [p.number for p in pages] == list(range(1, len(pages) + 1))
        assert {p.paper_id for p in pages} == {pdf.stem}


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_known_phrases_on_known_pages(extractor: str) -> None:
    pages = extract_pages(ATTENTION, "1706.03762", extractor)
    assert len(pages) == 15
    assert "Scaled Dot-Product Attention" in pages[3].text  # page 4: Figure 2 and 3.2.1
    assert "28.4 BLEU" in pages[0].text  # the abstract
    assert re.search(r"Transformer \(big\) 28\.4 41\.8", pages[7].text)  # Table 2, page 8
    assert pages[1].text.startswith("1 Introduction")
    assert "English-to-German" in pages[0].text  # "English-" at a line end keeps its hyphen


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_ligatures_become_letters(extractor: str) -> None:
    """BART writes "Text Inﬁlling" with the ﬁ ligature: it must be findable as "infilling"."""
    pages = extract_pages(BART, "1910.13461", extractor)
    assert "Text Infilling" in pages[2].text
    assert "infilling" in pages[4].text.lower()
    assert not re.search("[\ufb00-\ufb06]", text_of(pages))


def test_pdfium_keeps_multiplication_sign(corpus: dict[str, list[Page]]) -> None:
    """FlashAttention's "3×" (which pypdf turns into "3" and a control character)."""
    pages = corpus["2205.14135"]
    assert "3× speedup on\nGPT-2" in pages[0].text
    assert "3× faster" in pages[2].text
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", text_of(pages))


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_no_arxiv_stamp_left(extractor: str, corpus: dict[str, list[Page]]) -> None:
    papers = corpus if extractor == "pypdfium2" else {
        p.stem: extract_pages(p, p.stem, extractor) for p in (ATTENTION, BART)}
    for paper_id, pages in papers.items():
        assert not STAMP.search(pages[0].text), paper_id
    assert "31st Conference on Neural Information Processing Systems" in (
        papers["1706.03762"][0].text)  # the line before the stamp stays


def test_hyphenation_follows_the_papers_spelling(corpus: dict[str, list[Page]]) -> None:
    bert = corpus["1810.04805"]
    # "ob-\njective" is a split word; "left-to-\nright" and "pre-\ntrain" are compounds
    assert "the MLM objective\nenables" in bert[1].text
    assert "Unlike left-to-right\nlanguage model pre-training" in bert[1].text
    assert "allows us to pre-train\n" in bert[1].text
    assert "pretrain " not in text_of(bert)  # BERT always writes "pre-train"
    roberta = text_of(corpus["1907.11692"]).lower()  # RoBERTa writes "pretraining"
    assert roberta.count("pretraining") >= 36 and roberta.count("pre-training") <= 5


def test_running_headers_and_page_numbers_removed(corpus: dict[str, list[Page]]) -> None:
    survey = corpus["2009.06732"]
    assert survey[0].text.startswith("Efficient Transformers: A Survey")  # page 1 keeps it
    for page in survey[1:]:
        assert "Efficient Transformers: A Survey" not in page.text.split("\n")[0], page.number
    pythia = corpus["2304.01373"]
    assert pythia[0].text.startswith("Pythia: A Suite for Analyzing Large Language Models")
    assert sum("Pythia: A Suite for" in p.text for p in pythia[1:]) == 0
    iclr = corpus["1409.0473"]
    assert sum("Published as a conference paper at ICLR" in p.text for p in iclr[1:]) == 0
    attention = corpus["1706.03762"]
    for page in attention[1:11]:  # numbered pages 2..11 of the body
        assert page.text.split("\n")[-1].strip() != str(page.number), page.number
    # pdfium ends Pythia's page 4 with "Addition\ufffe4": hyphen, page number "4", and the
    # word goes on at the top of page 5
    assert pythia[3].text.endswith("throughout training. Additionally,")
    assert pythia[4].text.startswith("we save log-spaced checkpoints")


def test_paragraph_breaks_are_blank_lines(corpus: dict[str, list[Page]]) -> None:
    page = corpus["1810.04805"][0].text
    assert "(5.1 point absolute improvement).\n\n1 Introduction" in page
    assert "\n\n\n" not in text_of(corpus["1810.04805"])


@pytest.mark.slow
def test_pypdf_reads_the_whole_corpus(corpus: dict[str, list[Page]]) -> None:
    """Both extractors agree on page count and mostly on words (pypdf takes ~30 s)."""
    for pdf in ALL_PDFS:
        pages = extract_pages(pdf, pdf.stem, "pypdf")
        assert len(pages) == len(corpus[pdf.stem])
        assert not STAMP.search(pages[0].text), pdf.name
        words = set(text_of(pages).split())
        other = set(text_of(corpus[pdf.stem]).split())
        assert len(words & other) > 0.8 * len(other), pdf.name


# ----------------------------------------------------------- stderr and warnings


def damaged_xref(tmp_path: Path) -> Path:
    """A real paper whose startxref offset is wrong: readers repair it, pypdf complains."""
    data = BART.read_bytes()
    m = list(re.finditer(rb"startxref\s+(\d+)", data))[-1]
    path = tmp_path / "damaged.pdf"
    path.write_bytes(data[: m.start(1)] + str(int(m.group(1)) + 5).encode() + data[m.end(1) :])
    return path


def test_pypdf_messages_go_to_the_debug_log_not_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = damaged_xref(tmp_path)
    pypdf_log = logging.getLogger("pypdf")
    before = (pypdf_log.propagate, list(pypdf_log.handlers), list(warnings.filters))
    with caplog.at_level(logging.DEBUG):
        pages = extract_pages(path, "1910.13461", "pypdf")
    assert len(pages) == 10
    assert capfd.readouterr().err == ""
    records = [r for r in caplog.records if "incorrect startxref pointer" in r.getMessage()]
    assert [(r.name, r.levelno) for r in records] == [("ingest.extract", logging.DEBUG)]
    assert (pypdf_log.propagate, list(pypdf_log.handlers), list(warnings.filters)) == before


def test_nothing_on_stderr_in_a_fresh_process(tmp_path: Path) -> None:
    """Without pytest's log capture, pypdf's complaints would reach stderr (logging's
    last-resort handler): a plain interpreter shows they do not."""
    path = damaged_xref(tmp_path)
    code = ("import sys; from ingest.extract import extract_pages; "
            "print(len(extract_pages(sys.argv[1], 'x', 'pypdf')))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent, check=True)
    assert done.stdout.strip() == "10"
    assert done.stderr == ""


def test_other_libraries_warnings_still_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warning raised by someone else while pypdf reads is re-emitted, not swallowed."""
    original = pypdf.PdfReader.__init__

    def noisy_init(self: pypdf.PdfReader, *args: object, **kwargs: object) -> None:
        warnings.warn("not from pypdf", UserWarning, stacklevel=1)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pypdf.PdfReader, "__init__", noisy_init)
    with pytest.warns(UserWarning, match="not from pypdf"):
        extract_pages(BART, "1910.13461", "pypdf")


def test_runs_in_a_process_pool() -> None:
    pickle.dumps(extract_pages)
    with ProcessPoolExecutor(max_workers=1) as pool:
        pages = pool.submit(extract_pages, BART, "1910.13461", "pypdfium2").result()
    assert len(pages) == 10 and "Text Infilling" in pages[2].text


# ----------------------------------------------------------------- bad input


def scanned_copy(tmp_path: Path) -> Path:
    """Two pages of a real paper as pictures only: an image-only ("scanned") PDF."""
    src, out = pdfium.PdfDocument(ATTENTION), pdfium.PdfDocument.new()
    for i in range(2):
        width, height = src[i].get_size()
        image = pdfium.PdfImage.new(out)
        image.set_bitmap(pdfium.PdfBitmap.from_pil(src[i].render(scale=0.5).to_pil()))
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        page = out.new_page(width, height)
        page.insert_obj(image)
        page.gen_content()
    path = tmp_path / "scanned.pdf"
    out.save(path)
    return path


def encrypted_copy(tmp_path: Path, user_password: str) -> Path:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(BART))
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    path = tmp_path / f"encrypted-{bool(user_password)}.pdf"
    writer.write(path)
    return path


def bad_file(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.pdf"
    if kind == "truncated":
        data = ATTENTION.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "html":
        path.write_text("<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>"
                        "<body>Checking your browser</body></html>\n")
    elif kind == "corrupt":
        path.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\n"
                         + bytes(range(256)) * 8 + b"\nstartxref\n12345\n%%EOF\n")
    elif kind == "encrypted":
        return encrypted_copy(tmp_path, "secret")
    elif kind == "blank":
        writer = pypdf.PdfWriter()
        for _ in range(3):
            writer.add_blank_page(612, 792)
        writer.write(path)
    elif kind == "scanned":
        return scanned_copy(tmp_path)
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize(("kind", "message"), [
    ("truncated", "is truncated or corrupt"),
    ("html", "is HTML, not a PDF; the server returned a web page"),
    ("corrupt", "is corrupt"),
    ("encrypted", "is encrypted; decrypt it (e.g. qpdf --decrypt"),
    ("blank", "has no text layer"),
    ("scanned", "has no text layer (a scanned or image-only PDF); OCR is not supported"),
    ("empty", "is empty"),
])
def test_bad_pdfs_give_one_line_errors(
    kind: str, message: str, extractor: str, tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = bad_file(kind, tmp_path)
    with pytest.raises(PdfError) as info:
        extract_pages(path, kind, extractor)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_owner_password_only_pdf_is_read(extractor: str, tmp_path: Path) -> None:
    """Encrypted with an empty user password (printing restrictions only): readable."""
    pages = extract_pages(encrypted_copy(tmp_path, ""), "1910.13461", extractor)
    assert "Text Infilling" in pages[2].text


def test_missing_file_and_unknown_extractor(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        extract_pages(tmp_path / "nope.pdf", "nope")
    with pytest.raises(PdfError, match="Unknown PDF extractor"):
        extract_pages(BART, "1910.13461", "pdfminer")


# ---------------------------------------------------------- metadata helpers

TITLES = {
    "1409.0473": "NEURAL MACHINE TRANSLATION BY JOINTLY LEARNING TO ALIGN AND TRANSLATE",
    "1706.03762": "Attention Is All You Need",
    "1707.06347": "Proximal Policy Optimization Algorithms",
    "1810.04805": "BERT: Pre-training of Deep Bidirectional Transformers for Language "
                  "Understanding",
    "1907.11692": "RoBERTa: A Robustly Optimized BERT Pretraining Approach",
    "1910.13461": "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language "
                  "Generation, Translation, and Comprehension",
    "2009.01325": "Learning to summarize from human feedback",
    "2009.06732": "Efficient Transformers: A Survey",
    "2106.09685": "LORA: LOW-RANK ADAPTATION OF LARGE LANGUAGE MODELS",
    "2203.02155": "Training language models to follow instructions with human feedback",
    "2204.02311": "PaLM: Scaling Language Modeling with Pathways",
    "2205.14135": "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness",
    "2302.13971": "LLaMA: Open and Efficient Foundation Language Models",
    "2304.01373": "Pythia: A Suite for Analyzing Large Language Models Across Training and "
                  "Scaling",
    "gpt1": "Improving Language Understanding by Generative Pre-Training",
}


def test_first_page_titles(corpus: dict[str, list[Page]]) -> None:
    assert {pid: first_page_title(pages[0].text) for pid, pages in corpus.items()} == TITLES
    assert first_page_title("") == ""


def test_arxiv_stamp_of_every_corpus_pdf() -> None:
    for pdf in ALL_PDFS:
        stamp = arxiv_stamp_of_pdf(pdf)
        if pdf.stem == "gpt1":
            assert stamp is None
        else:
            assert stamp is not None and stamp[0] == pdf.stem, pdf.name
    assert arxiv_stamp_of_pdf(ATTENTION) == ("1706.03762", 7)


def test_arxiv_stamp_forwards_reversed_vertical() -> None:
    stamp = "arXiv:1706.03762v7 [cs.CL] 2 Aug 2023"
    assert arxiv_id_from_stamp(f"Some text\n{stamp}\n") == ("1706.03762", 7)
    assert arxiv_id_from_stamp(f"Some text\n{stamp[::-1]}\n") == ("1706.03762", 7)
    vertical = "\n".join(ch for ch in stamp if ch != " ")
    assert arxiv_id_from_stamp(f"Title\n{vertical}\nBody") == ("1706.03762", 7)
    assert arxiv_id_from_stamp(f"Title\n{vertical[::-1]}\nBody") == ("1706.03762", 7)
    assert arxiv_id_from_stamp("arXiv:hep-th/9901001 [hep-th] 1 Jan 1999") == (
        "hep-th/9901001", None)
    assert arxiv_id_from_stamp("see arXiv:1706.03762 for details") is None


def test_pdf_metadata() -> None:
    pythia = pdf_metadata(CORPUS_PDFS / "2304.01373.pdf")
    assert pythia["title"] == TITLES["2304.01373"]
    assert pythia["authors"][:2] == ("Stella Biderman", "Hailey Schoelkopf")
    assert pythia["year"] == 2023
    attention = pdf_metadata(ATTENTION)
    assert attention["title"] == "" and attention["authors"] == ()
    assert attention["year"] == 2023  # the PDF was made for arXiv v7, 2 Aug 2023


# ------------------------------------------------------ normalisation (pure)


def test_normalise_nfkc_and_control_characters() -> None:
    [text] = normalise_page_texts(["Text Inﬁlling and ﬂows,\x02 3\x02 faster\r\nnext  line\t!"])
    assert text == "Text Infilling and flows, 3 faster\nnext line !"


def test_normalise_dehyphenation() -> None:
    [text] = normalise_page_texts(["We use pre-\ntraining data and state-of-the-\nart models"
                                   " with GPT-\n3 and Transformer-\nXL."])
    assert text == ("We use pretraining\ndata and state-of-the-art\nmodels with GPT-3\n"
                    "and Transformer-XL.")
    # the document's own spelling wins: it writes "pre-training" elsewhere
    [text] = normalise_page_texts(["Large-scale pre-training helps. Our pre-\ntraining set."])
    assert "Our pre-training\nset." in text
    # pdfium marks a line-end hyphen with U+FFFE and drops the line break
    [text] = normalise_page_texts(["the MLM ob\ufffejective enables"])
    assert text == "the MLM objective\nenables"


def test_normalise_word_split_over_a_page_break() -> None:
    pages = normalise_page_texts(["end of page with a hyphen-\n1", "ated word here.\n2",
                                  "more text\n3"])
    assert pages[0] == "end of page with a hyphenated"
    assert pages[1] == "word here."


BODY = ["Attention maps queries to keys.", "Values are weighted by scores.",
        "Heads run in parallel.", "Outputs are concatenated.", "Layers are stacked six times.",
        "Residual connections help.", "Dropout regularises the model.", "Training takes days."]


def test_normalise_running_lines_and_page_numbers() -> None:
    raw = [f"Journal of Tests, Vol. 3\n{BODY[i]}\n{BODY[i + 1]}\n{BODY[i + 2]}\nPage {i} of 5"
           for i in range(1, 6)]
    raw[0] = "A Real Title\n" + raw[0]
    pages = normalise_page_texts(raw)
    assert pages[1] == "\n".join(BODY[2:5])
    assert pages[0].startswith("A Real Title\nJournal of Tests, Vol. 3")  # page-1 top kept
    assert pages[0].endswith(BODY[3])
    # bare page numbers
    raw = [f"{BODY[i]}\n{BODY[i + 1]}\n{BODY[i + 2]}\n{BODY[i + 3]}\n{i}" for i in range(1, 5)]
    pages = normalise_page_texts(raw)
    assert [p.split("\n")[-1] for p in pages] == BODY[4:8]
    # fewer than three pages: nothing is "running"
    assert normalise_page_texts(["Header\nA.", "Header\nB."]) == ["Header\nA.", "Header\nB."]


def test_normalise_removes_stamp_in_every_rendering() -> None:
    stamp = "arXiv:2106.09685v2 [cs.CL] 16 Oct 2021"
    vertical = "\n".join(stamp.replace(" ", ""))
    for raw in (f"Title\n{stamp}\nBody.", f"Title\n{stamp[::-1]}\nBody.",
                f"Title\n{vertical}\nBody.", f"Title\n{vertical[::-1]}\nBody."):
        assert normalise_page_texts([raw]) == ["Title\nBody."], raw


def test_normalise_keeps_blank_lines_and_marks_paragraph_ends() -> None:
    long = "This line of the paragraph is long enough to be a full line of text"
    [text] = normalise_page_texts([f"{long}\n{long}\nShort end.\nNext paragraph {long}\n\n\n"
                                   f"After a blank line.\n   \n\n"])
    assert text == (f"{long}\n{long}\nShort end.\n\nNext paragraph {long}\n\n"
                    "After a blank line.")
    assert normalise_page_texts(["", "  \n "]) == ["", ""]
