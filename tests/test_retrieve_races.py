"""Retrieval while a writer changes the library (real SQLite, real FAISS, real BM25; the
query's vector is given): a paper removed between the retriever's reads of the chunks and of
the papers is skipped like any removed passage, never a KeyError in a chat."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.library import Library
from rag.retrieve import Retriever
from tests.helpers import make_settings

DIM = 16
CHUNKS = 6


class GivenVector:
    """Embeds every query as the vector the test chose (the passages' vectors are given)."""

    name = "test-embedder"
    dim = DIM
    backend = "torch"
    vectors = "fp32"

    def __init__(self, query: np.ndarray) -> None:
        self.query = query

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        assert kind == "query"
        return np.stack([self.query] * len(texts))


class RemovesBetweenReads(Library):
    """A library whose next read of chunks is followed by a writer removing ``victim``:
    the interleaving a chat meets when `paperchat remove` commits during its search."""

    victim = ""

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        found = super().chunks(ids)
        if self.victim:
            victim, self.victim = self.victim, ""
            with self.writer():
                assert self.remove_paper(victim)
        return found


def vectors(n: int) -> np.ndarray:
    x = np.random.default_rng(n).standard_normal((CHUNKS, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add(library: Library, n: int) -> None:
    pid = f"p{n}"
    paper = Paper(pid, f"Paper {n}", (), 2020, "", (), None, None, None, "test", pid, 1)
    chunks = [Chunk(pid, i, f"attention passage {i} of paper {n}", 1, 1, 0, 10)
              for i in range(CHUNKS)]
    library.add_paper(paper, [Page(pid, 1, "text")], chunks, vectors(n))


def settings_for(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", index={"use_gpu": "never"},
                         embedding={"model": GivenVector.name},
                         retrieval={"reranker": "", "per_paper_cap": CHUNKS})


def test_a_paper_removed_between_the_reads_is_skipped(tmp_path: Path) -> None:
    library = RemovesBetweenReads(settings_for(tmp_path), GivenVector(vectors(0)[0]))
    with library.writer():
        add(library, 0)
        add(library, 1)
    retriever = Retriever(library.settings, library)
    before = retriever.search("attention passage", k=2 * CHUNKS)
    assert {h.chunk.paper_id for h in before.hits} == {"p0", "p1"}
    library.victim = "p0"  # the query's own paper: its passages rank first
    during = retriever.search("attention passage", k=2 * CHUNKS)
    assert during.hits and {h.chunk.paper_id for h in during.hits} == {"p1"}
    after = retriever.search("attention passage", k=2 * CHUNKS)
    assert {h.chunk.paper_id for h in after.hits} == {"p1"}
    library.close()
