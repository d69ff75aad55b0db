"""BM25 tokenizer and index on real text from the corpus (Attention Is All You Need)."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from core.types import Page
from index.bm25 import BM25Index, Shard, ShardBuilder, tokenize
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
    index = BM25Index((shard(np.arange(len(transformer_pages)),
                             [p.text for p in transformer_pages]),))
    best, _ = index.search("Adam beta2 value", k=1)[0]
    assert "0.98" in transformer_pages[best].text


# -- shards with global statistics (issue 11, item 3) -----------------------------------

QUERIES = ["Adam beta2 value", "multi-head attention layers", "BLEU English-to-German 28.4",
           "label smoothing", "positional encoding sinusoid", "dropout rate residual"]


@pytest.fixture(scope="module")
def passages(transformer_pages: list[Page]) -> list[str]:
    """The paper's text in passages of six lines: about 150 passages of real text."""
    lines = [ln for page in transformer_pages for ln in page.text.splitlines() if ln.strip()]
    return ["\n".join(lines[i:i + 6]) for i in range(0, len(lines), 6)]


def bm25s_scores(texts: list[str], query: str) -> np.ndarray:
    """bm25s's own scores over ``texts`` (one index, its statistics): the reference."""
    vocab: dict[str, int] = {}
    token_ids = [[vocab.setdefault(w, len(vocab)) for w in tokenize(t)] for t in texts]
    model = bm25s.BM25()
    model.index(bm25s.tokenization.Tokenized(ids=token_ids, vocab=vocab), show_progress=False)
    q = [vocab[w] for w in tokenize(query) if w in vocab]
    return model.get_scores(q) if q else np.zeros(len(texts))


def shard(ids: np.ndarray, texts: list[str]) -> Shard:
    builder = ShardBuilder()
    builder.add(ids, texts)
    return builder.build()


def sharded(texts: list[str], cuts: list[int]) -> BM25Index:
    index = BM25Index()
    for lo, hi in zip([0, *cuts], [*cuts, len(texts)], strict=True):
        index = index.with_shard(shard(np.arange(lo, hi) + 1, texts[lo:hi]))
    return index


def assert_same_as_one_index(index: BM25Index, texts: dict[int, str]) -> None:
    ids = sorted(texts)
    for query in QUERIES:
        want = bm25s_scores([texts[i] for i in ids], query)
        got = dict(index.search(query, len(ids) + 5))
        assert set(got) == {i for i, s in zip(ids, want, strict=True) if s > 0}, query
        for i, s in zip(ids, want, strict=True):
            if s > 0:
                assert got[i] == pytest.approx(float(s), rel=1e-5), (query, i)


def test_shards_score_as_one_index_over_the_library(passages: list[str]) -> None:
    index = sharded(passages, [10, 37, 38, 80])
    assert len(index.shards) == 5
    assert_same_as_one_index(index, dict(enumerate(passages, start=1)))


def test_masked_chunks_leave_the_statistics(passages: list[str]) -> None:
    index = sharded(passages, [30, 60])
    gone = set(range(20, 55))  # a removed paper's chunks, across two shards
    live = np.array([i for i in range(1, len(passages) + 1) if i not in gone])
    masked = index.keeping(live)
    assert len(masked) == len(live) and len(index) == len(passages)
    assert_same_as_one_index(masked, {i: passages[i - 1] for i in live})
    compact = masked.compacted(max_shards=8)  # 35 of ~150 rows masked: merged
    assert compact is not None and len(compact.shards) == 1 and len(compact.dead) == 0
    assert_same_as_one_index(compact, {i: passages[i - 1] for i in live})


def test_compaction_past_the_shard_count_keeps_the_scores(passages: list[str]) -> None:
    index = sharded(passages, [90, *range(92, 106, 2)])  # one large shard, 8 smaller ones
    assert len(index.shards) == 9 and index.compacted(max_shards=9) is None
    compact = index.compacted(max_shards=8)
    assert compact is not None and len(compact.shards) == 2
    assert index.shards[0] in compact.shards  # the large one is left as it was
    assert_same_as_one_index(compact, dict(enumerate(passages, start=1)))


def test_a_shard_survives_saving_and_a_truncated_file_is_an_error(
        passages: list[str], tmp_path: Path) -> None:
    one = shard(np.arange(1, len(passages) + 1), passages)
    (tmp_path / one.name).mkdir()
    one.save(tmp_path / one.name)
    loaded = BM25Index((Shard.load(tmp_path / one.name),))
    assert loaded.search("label smoothing", 5) == BM25Index((one,)).search("label smoothing", 5)
    rows = tmp_path / one.name / "rows.npy"
    rows.write_bytes(rows.read_bytes()[:-8])
    with pytest.raises(ValueError):
        Shard.load(tmp_path / one.name)


def test_allowed_ids_restrict_the_hits(passages: list[str]) -> None:
    index = sharded(passages, [50])
    every = index.search("attention", 200)
    allowed = np.array([cid for cid, _ in every][::3])
    assert index.search("attention", 200, allowed) == [h for h in every
                                                       if h[0] in set(allowed.tolist())]
