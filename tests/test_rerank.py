"""The optional cross-encoder reranker (retrieval.reranker), with a cross-encoder built
locally from the packaged MiniLM weights (tests/crossencoders.py), over the shared corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings
from index.open import open_library
from paperchat.cli import main
from rag.rerank import CrossEncoderReranker
from rag.retrieve import Retriever
from tests.crossencoders import build_cross_encoder
from tests.helpers import make_settings

QUERY = "What BLEU score did the Transformer reach on English-to-German?"


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cross_encoder(tmp_path_factory.mktemp("ce") / "reranker", ["relevance"])


def predict(folder: Path, texts: list[str]) -> list[float]:
    """The cross-encoder's own scores of (QUERY, text), loaded apart from the reranker."""
    from sentence_transformers import CrossEncoder

    return [float(s) for s in CrossEncoder(str(folder), device="cpu").predict(
        [(QUERY, t) for t in texts], show_progress_bar=False)]


def with_retrieval(settings: Settings, **values: object) -> Settings:
    return make_settings(settings.data_dir, retrieval=dict(values))


def test_rerank_orders_fused_hits_by_the_cross_encoder(
        corpus_settings: Settings, reranker_dir: Path) -> None:
    fused = Retriever(corpus_settings, open_library(corpus_settings)).search(QUERY, k=8).hits
    expected = predict(reranker_dir, [h.chunk.text for h in fused])
    order = sorted(range(len(fused)), key=lambda i: -expected[i])
    assert order != list(range(len(fused))), "the test needs an order unlike the fusion's"
    out = CrossEncoderReranker(str(reranker_dir), "cpu").rerank(QUERY, fused)
    assert [h.chunk.id for h in out] == [fused[i].chunk.id for i in order]
    assert [h.score for h in out] == pytest.approx([expected[i] for i in order], abs=1e-5)
    assert [h.fused_score for h in out] == [fused[i].score for i in order]


def test_search_with_the_reranker_setting_ranks_by_cross_encoder_score(
        corpus_settings: Settings, reranker_dir: Path) -> None:
    # one passage per paper, so no adjacent passages merge, and no sentence completed from
    # a neighbour (retrieval.whole_sentences): each hit's text is the one that was scored
    reranked_settings = with_retrieval(corpus_settings, reranker=str(reranker_dir),
                                       per_paper_cap=1, rerank_candidates=20,
                                       whole_sentences=False)
    library = open_library(reranked_settings)
    reranked = Retriever(reranked_settings, library).search(QUERY, k=5)
    fused = Retriever(with_retrieval(corpus_settings, per_paper_cap=1), library).search(
        QUERY, k=5)
    scores = [h.score for h in reranked.hits]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert scores == pytest.approx(predict(reranker_dir, [h.chunk.text for h in reranked.hits]),
                                   abs=1e-5)
    assert all(h.fused_score is not None for h in reranked.hits)
    assert [h.chunk.id for h in reranked.hits] != [h.chunk.id for h in fused.hits]
    assert [h.rank for h in reranked.hits] == [1, 2, 3, 4, 5]
    assert "rerank" in reranked.timings_ms and "rerank" not in fused.timings_ms


def test_a_multi_label_model_is_refused_as_reranker(tmp_path: Path) -> None:
    folder = build_cross_encoder(tmp_path / "nli", ["contradiction", "entailment", "neutral"])
    with pytest.raises(ConfigError, match=r"retrieval\.reranker"):
        CrossEncoderReranker(str(folder), "cpu")


@pytest.mark.parametrize("kind", ["missing", "not-a-model"])
def test_unloadable_reranker_is_a_one_line_cli_error(
        corpus_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], kind: str) -> None:
    folder = tmp_path / kind
    if kind == "not-a-model":
        folder.mkdir()
        (folder / "notes.txt").write_text("not a model")
    monkeypatch.setenv("PAPERCHAT_RETRIEVAL_RERANKER", str(folder))
    code = main(["--data-dir", str(corpus_settings.data_dir), "search", QUERY, "--json"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: Cannot load the reranker model")
    assert str(folder) in lines[0] and "retrieval.reranker" in lines[0]
