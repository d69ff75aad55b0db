"""Sentence signals (index/sentences.py) and evidence-level ranking (rag/sentence_rank.py,
the ordering helpers of rag/retrieve.py): unit tests on text written for the test, a real
SQLite file, and a counting stand-in for the embedder (the real one is used by the corpus
tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import EmbeddingSettings
from core.types import Chunk, Hit, Page
from index.embedder import SentenceTransformerEmbedder
from index.sentences import (
    ChunkSentences,
    SentenceStore,
    embed_chunks,
    forget_paper,
    sentence_spans,
    sentence_terms,
)
from rag.retrieve import merge_runs, promote_named, whole_sentences
from rag.sentence_rank import best_sentence_scores, query_weights

TEXT = ("Glimmer reads graphs. It was trained for 12 days on 64 chips.\n\n"
        "Model BLEU Cost\nGlim-S 21.5 3\nGlim-L 27.9 9\nBase 19.0 1\n\n"
        "The learning rate was warmed up over 4000 steps and then decayed.")


class CountingEmbedder:
    """One-hot-ish vectors from a hash of the text; counts the texts embedded. It does not
    pool by mean: each sentence is embedded alone (the other path is tested with the real
    model in test_embedder_spans)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        self.texts.extend(texts)
        out = np.zeros((len(texts), 8), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, hash(t) % 8] = 1.0
        return out


def test_sentences_and_table_lines_are_units() -> None:
    units = [TEXT[s:e] for s, e in sentence_spans(TEXT)]
    assert units[:2] == ["Glimmer reads graphs.", "It was trained for 12 days on 64 chips."]
    assert "Glim-L 27.9 9" in units  # a table gives one unit a line
    assert units[-1].startswith("The learning rate") and units[-1].endswith("decayed.")


def test_a_sentence_cut_by_a_chunk_boundary_is_read_whole() -> None:
    pages = [Page("p", 1, TEXT[:60]), Page("p", 2, TEXT[61:])]
    joined = "\n".join(p.text for p in pages)
    cut = joined.index("warmed")  # the last sentence is cut between the two chunks
    c0 = Chunk("p", 0, joined[:cut], 1, 2, 0, cut, id=1)
    c1 = Chunk("p", 1, joined[cut:], 2, 2, cut - 61, len(joined) - 61, id=2)
    embed = CountingEmbedder()
    vectors, rows = embed_chunks(embed, pages, [c0, c1], [f"T.\n{c0.text}", f"T.\n{c1.text}"])
    assert vectors.shape == (2, 8)
    whole = "The learning rate was warmed up over 4000 steps and then decayed."
    assert embed.texts.count(whole) == 1  # embedded once, whole, for both chunks
    assert rows[0].tail == "warmed up over 4000 steps and then decayed."
    assert rows[1].head == "The learning rate was "
    assert rows[0].spans[-1][1] == len(c0.text) and rows[1].spans[0][0] == 0
    assert "4000" in rows[0].terms[-1] and "learn" in rows[1].terms[0]
    assert len(rows[0].vectors) == len(rows[0].spans) == len(rows[0].terms)


def test_a_percentage_is_a_percent_term() -> None:
    assert "percent" in sentence_terms("Our data is over 96% English.")
    assert "percent" not in sentence_terms("Our data is mostly English.")
    assert "percent" in query_weights("What percentage is English?", {"percent": 2.0,
                                                                      "english": 1.0})


def test_store_round_trip_keys_by_setup_and_text(tmp_path: Path) -> None:
    c = Chunk("p", 0, "Glimmer reads graphs.", 1, 1, 0, 21, id=7)
    other = Chunk("q", 0, "Something else.", 1, 1, 0, 15, id=8)
    row = ChunkSentences(np.asarray([[0, 21]], np.int32), [["glimmer", "read", "graph"]],
                         np.ones((1, 8), np.float32) / np.sqrt(8), "", " next")
    store = SentenceStore(tmp_path / "sentences.sqlite", "model-a")
    store.put("p", [c], [row])
    got = store.get([c, other])
    assert list(got) == [7] and got[7].terms == row.terms and got[7].tail == " next"
    assert np.allclose(got[7].vectors, row.vectors, atol=1e-3)
    assert store.missing([c, other]) == [other]
    changed = Chunk("p", 0, "Glimmer reads trees.", 1, 1, 0, 20, id=7)
    assert store.get([changed]) == {}  # a row is never read for another text
    assert SentenceStore(tmp_path / "sentences.sqlite", "model-b").get([c]) == {}
    assert store.keep_only({store.key(c.text)}) == 0
    assert store.keep_only(set()) == 1 and store.get([c]) == {}
    store.put("p", [c], [row])
    store.close()
    forget_paper(tmp_path, "p")
    assert SentenceStore(tmp_path / "sentences.sqlite", "model-a").get([c]) == {}


def test_best_sentence_wins_and_rare_words_weigh_more() -> None:
    q = np.asarray([1.0, 0.0], np.float32)
    near = ChunkSentences(np.asarray([[0, 5], [6, 9]], np.int32), [["model"], ["other"]],
                          np.asarray([[0.2, 0.98], [0.9, 0.44]], np.float32))
    named = ChunkSentences(np.asarray([[0, 5]], np.int32), [["glimmer", "model"]],
                           np.asarray([[0.3, 0.95]], np.float32))
    weights = {"glimmer": 5.0, "model": 0.5}
    scores = best_sentence_scores(q, weights, {1: near, 2: named}, share=0.5)
    assert scores[1] == pytest.approx(0.5 * 0.9)  # its second sentence: the best one
    assert scores[2] > scores[1]  # the rare word counts
    assert best_sentence_scores(q, weights, {1: near}, share=1.0)[1] == pytest.approx(0.9)


def hit(pid: str, ordinal: int, score: float, text: str = "x") -> Hit:
    return Hit(chunk=Chunk(pid, ordinal, text, 1, 1, 0, len(text), id=ordinal + 100 * ord(pid)),
               paper_title=pid, paper_year=None, score=score)


def test_adjacent_chunks_merge_at_the_best_place_and_named_papers_are_promoted() -> None:
    hits = [hit("a", 3, 0.9, "one two"), hit("b", 1, 0.8), hit("a", 4, 0.7, "two three"),
            hit("c", 1, 0.6), hit("d", 1, 0.5), hit("e", 1, 0.4)]
    runs = merge_runs(hits)
    assert [(h.chunk.paper_id, list(r)) for h, r in runs][:2] == [("a", [3, 4]), ("b", [1])]
    assert len(runs) == 5 and runs[0][0].score == 0.9
    promoted = promote_named(runs, ["e"], within=2)
    assert [h.chunk.paper_id for h, _ in promoted] == ["a", "e", "b", "c", "d"]
    scores = [h.score for h, _ in promoted]
    assert scores == sorted(scores, reverse=True)


def test_whole_sentences_completes_a_passage_from_its_neighbours() -> None:
    h = hit("a", 0, 1.0, "learning rate was warmed")
    rows = {h.chunk.id or 0: ChunkSentences(np.zeros((1, 2), np.int32), [[]],
                                            np.zeros((1, 2), np.float32), "The ", " up.")}
    assert whole_sentences(h, rows).chunk.text == "The learning rate was warmed up."
    assert whole_sentences(h, {}).chunk.text == h.chunk.text


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbeddingSettings())


def test_sentence_vectors_come_from_the_chunks_own_forward_pass(
        embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.pools_by_mean
    text = ("The model was trained on a corpus of books. "
            "Its learning rate was warmed up over four thousand steps.")
    second = text.index("Its")
    vectors, spans = embedder.embed_spans([text], [[(0, second - 1), (second, len(text))]])
    assert np.allclose(vectors, embedder.embed([text]), atol=1e-4)  # the chunk's own vector
    books, warmup = embedder.embed(["Which corpus of books was used?",
                                    "How long was the warmup of the learning rate?"], "query")
    assert spans[0][0] @ books > spans[0][1] @ books
    assert spans[0][1] @ warmup > spans[0][0] @ warmup
    _, far = embedder.embed_spans(["short text"], [[(500, 600)]])
    assert not far[0].any()  # past what the model reads: a zero vector


def test_a_cut_sentence_takes_the_vector_of_the_chunk_holding_more_of_it(
        embedder: SentenceTransformerEmbedder) -> None:
    pages = [Page("p", 1, TEXT)]
    cut = TEXT.index("warmed")
    start = TEXT.index("The learning rate")
    c0 = Chunk("p", 0, TEXT[:cut], 1, 1, 0, cut, id=1)
    c1 = Chunk("p", 1, TEXT[start:], 1, 1, start, len(TEXT), id=2)  # overlaps c0
    _, rows = embed_chunks(embedder, pages, [c0, c1], [c0.text, c1.text])
    assert rows[0].tail and not rows[1].head  # whole in c1, cut in c0
    assert np.allclose(rows[0].vectors[-1], rows[1].vectors[0])  # c0 reads it whole from c1
