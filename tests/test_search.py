"""`paperchat search` on the whole-corpus library: the JSON and text output, ranking, the
per-paper cap, merging of adjacent chunks, the paper filter, and the empty library."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from core.types import Chunk, Hit
from index.library import Catalog, Library
from index.open import open_library
from paperchat.cli import main
from rag.retrieve import Retriever
from tests.helpers import free_port, make_settings

BROAD = "pre-training objectives for language models"
# Every one of the 100 fused candidates of this query is a FlashAttention chunk: without
# the cap, all ten hits come from 2205.14135 (checked in test_per_paper_cap_...).
ONE_PAPER = "IO-aware tiling SRAM HBM"  # names no paper: a named paper has no cap
FLASH = "2205.14135"


def search_json(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str,
                config: Path | None = None) -> dict[str, Any]:
    extra = ["--config", str(config)] if config else []
    code = main(["--data-dir", str(data_dir), *extra, "search", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def library(corpus_settings: Settings) -> Library:
    return open_library(corpus_settings)


def test_search_json_hits_are_full_passages_ranked_by_score(
        corpus_settings: Settings, library: Library,
        capsys: pytest.CaptureFixture[str]) -> None:
    hits = search_json(capsys, corpus_settings.data_dir, BROAD, "-k", "10")["hits"]
    assert len(hits) == 10
    assert all({"paper_id", "page", "score", "text"} <= set(h) for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and [h["rank"] for h in hits] == list(
        range(1, 11))
    assert len({h["paper_id"] for h in hits}) >= 3
    titles = {p.id: p.title for p in library.papers()}
    stored = library.chunks([h["chunk_id"] for h in hits])
    for h in hits:
        chunk = stored[h["chunk_id"]]
        assert h["paper_id"] == chunk.paper_id and h["page"] == chunk.page_start
        assert h["title"] == titles[h["paper_id"]]
        # the whole passage as the model is shown it: the chunk, or chunks merged from it,
        # its first and last sentences completed from the neighbours (retrieval.whole_sentences)
        assert h["text"] == chunk.text or (chunk.text[:40] in h["text"]
                                           and len(h["text"]) > len(chunk.text))


def test_per_paper_cap_holds_and_matters(corpus_settings: Settings, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cap = corpus_settings.retrieval.per_paper_cap
    capped = search_json(capsys, corpus_settings.data_dir, ONE_PAPER, "-k", "10")["hits"]
    counts = Counter(h["paper_id"] for h in capped)
    assert counts[FLASH] == cap and max(counts.values()) <= cap, counts
    assert len(capped) == 10, "the search went deeper than the capped-away candidates"
    toml = tmp_path / "nocap.toml"
    toml.write_text("[retrieval]\nper_paper_cap = 1000\n")
    uncapped = search_json(capsys, corpus_settings.data_dir, ONE_PAPER, "-k", "10",
                           config=toml)["hits"]
    assert Counter(h["paper_id"] for h in uncapped)[FLASH] > cap, "the query is one-paper"
    toml.write_text("[retrieval]\nper_paper_cap = 1\n")
    two = search_json(capsys, corpus_settings.data_dir, BROAD, "-k", "10", config=toml)["hits"]
    assert max(Counter(h["paper_id"] for h in two).values()) <= 1


def run_of(hit: Hit, chunks: list[Chunk]) -> list[Chunk]:
    """The consecutive chunks of the hit's paper that its (merged) passage covers."""
    by_ordinal = {c.ordinal: c for c in chunks}
    run = [by_ordinal[hit.chunk.ordinal]]
    while not hit.chunk.text.endswith(run[-1].text):
        nxt = by_ordinal.get(run[-1].ordinal + 1)
        assert nxt is not None, f"passage at chunk {hit.chunk.ordinal} ends with no chunk"
        run.append(nxt)
    return run


def test_adjacent_chunks_merge_into_one_passage(corpus_settings: Settings,
                                                library: Library) -> None:
    """Without the cap, the one-paper query hits runs of consecutive chunks: each run comes
    back as one passage spanning the chunks' text and pages, never as neighbouring hits."""
    s = make_settings(corpus_settings.data_dir,  # whole chunks: no sentence completed
                      retrieval={"per_paper_cap": 1000, "whole_sentences": False})
    hits = Retriever(s, library).search(ONE_PAPER, k=10).hits
    chunks = library.chunks_of(FLASH)
    runs = [run_of(h, chunks) for h in hits]
    merged = [(h, run) for h, run in zip(hits, runs, strict=True) if len(run) > 1]
    assert merged, "no adjacent chunks were merged"
    for h, run in merged:
        assert h.chunk.text.startswith(run[0].text[:200])
        assert all(c.text[:40] in h.chunk.text for c in run)
        assert (h.chunk.page_start, h.chunk.page_end) == (run[0].page_start, run[-1].page_end)
        assert len(h.chunk.text) > max(len(c.text) for c in run)
    covered = [(h.chunk.paper_id, c.ordinal) for h, run in zip(hits, runs, strict=True)
               for c in run]
    assert len(covered) == len(set(covered)), "a chunk shows up in two passages"
    spans = sorted((h.chunk.paper_id, run[0].ordinal, run[-1].ordinal)
                   for h, run in zip(hits, runs, strict=True))
    for (pa, _, end), (pb, start, _) in pairwise(spans):
        assert pa != pb or start > end + 1, "neighbouring chunks left as separate hits"


def test_paper_filter_returns_only_that_paper(corpus_settings: Settings, library: Library,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    query = "low-rank adaptation of large language models"
    unfiltered = Retriever(corpus_settings, library).search(query, k=5).hits
    assert unfiltered[0].chunk.paper_id == "2106.09685"
    hits = search_json(capsys, corpus_settings.data_dir, query, "-k", "5",
                       "--paper", "1706.03762")["hits"]
    assert hits and {h["paper_id"] for h in hits} == {"1706.03762"}


def test_search_text_output_shows_id_title_page_score_snippet(
        corpus_settings: Settings, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    hits = search_json(capsys, corpus_settings.data_dir, "Text Infilling", "-k", "3")["hits"]
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside the table's cells
    assert main(["--data-dir", str(corpus_settings.data_dir), "search", "Text Infilling",
                 "-k", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "Text Infilling" in lines[0]
    assert hits[0]["paper_id"] == "1910.13461"
    for h in hits:
        row = next((i for i, line in enumerate(lines)
                    if f" {h['paper_id']} " in line and f" {h['score']:.4f} " in line), None)
        assert row is not None, (h["paper_id"], out)
        assert f" {h['page']} " in lines[row] and h["title"] in lines[row]
        snippet = " ".join(h["text"].split())[:60]
        assert snippet in lines[row + 1], (snippet, lines[row + 1])
    assert not any(len(" ".join(h["text"].split())) > 170
                   and " ".join(h["text"].split()) in " ".join(out.split()) for h in hits), \
        "the text output shows snippets, not whole passages"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_search_on_an_empty_library_says_to_ingest(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(tmp_path / "data"), "search", "attention", "--json"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert "`paperchat ingest`" in one_error_line(err)
    assert not (tmp_path / "data").exists()  # a mistyped --data-dir leaves nothing behind


def test_ask_on_an_empty_library_says_to_ingest_even_with_the_server_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path / "data")
    Catalog(settings).close()  # an existing, empty library
    code = main(["--data-dir", str(tmp_path / "data"), "--llm-url",
                 f"http://127.0.0.1:{free_port()}/v1", "ask", "What is BART?"])
    out, err = capsys.readouterr()
    assert code != 0 and out.strip() == ""
    assert "`paperchat ingest`" in one_error_line(err)  # ingesting comes first


@pytest.mark.slow
@pytest.mark.llm
def test_ask_on_an_empty_library_says_to_ingest(tmp_path: Path, llm_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(tmp_path / "data"), "--llm-url", llm_url, "ask",
                 "What is BART?"])
    out, err = capsys.readouterr()
    assert code != 0 and out.strip() == ""
    assert "`paperchat ingest`" in one_error_line(err)
