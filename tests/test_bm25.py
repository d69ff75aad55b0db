"""BM25 tokenizer and index on real text from the corpus (Attention Is All You Need)."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import Page
from index.bm25 import BM25Index, tokenize
from ingest.extract import extract_pages
from tests.helpers import CORPUS_PDFS


@pytest.fixture(scope="module")
def transformer_pages() -> list[Page]:
    return extract_pages(CORPUS_PDFS / "1706.03762.pdf", "1706.03762")


def test_greek_letters_match_their_names() -> None:
    assert {"beta", "2", "0.98"} <= set(tokenize("β2 = 0.98"))
    assert {"beta", "2"} <= set(tokenize("Adam beta2"))
    assert "lambda" in tokenize("GAE parameter (λ) 0.95")
    assert "epsilon" in tokenize("label smoothing ϵls")  # NFKC folds the lunate epsilon


def test_numbers_and_mixed_tokens_are_kept() -> None:
    words = tokenize("3.5 days on 8 P100 GPUs, 1.4T tokens, 800M words")
    assert {"3.5", "p100", "100", "1.4", "800m", "800"} <= set(words)


def test_spelled_out_greek_query_finds_the_optimizer_page(
        transformer_pages: list[Page]) -> None:
    """The page that writes "β2 = 0.98" is found by a question that types "beta2"."""
    index = BM25Index()
    index.build(np.arange(len(transformer_pages)), [p.text for p in transformer_pages])
    best, _ = index.search("Adam beta2 value", k=1)[0]
    assert "0.98" in transformer_pages[best].text
