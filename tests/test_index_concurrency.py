"""The library's indexes under concurrency, on real papers (three corpus PDFs through the
real pipeline), real FAISS (flat and HNSW) and real SQLite: chat threads search while a
writer ingests and removes papers, or reindexes the whole library, and every hit they get
is the passage its chunk id names (issue 14, items 2 and 4)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from core.text import tokenize
from core.types import Chunk, Page, Paper
from index.library import Library, embed_text
from index.open import open_library
from tests.helpers import CORPUS_PDFS, ingest_into, make_settings

pytestmark = pytest.mark.slow

SMALL = ["1910.13461.pdf", "1907.11692.pdf", "gpt1.pdf"]
ROUNDS = 8  # writer rounds: two papers removed, then added back
READERS = 3


@dataclass
class PaperRows:
    """One paper as the real pipeline stored it: what ``add_paper`` takes."""

    paper: Paper
    pages: list[Page]
    chunks: list[Chunk]
    vectors: np.ndarray


@pytest.fixture(scope="module")
def three_papers(tmp_path_factory: pytest.TempPathFactory) -> list[PaperRows]:
    settings = make_settings(tmp_path_factory.mktemp("three") / "data")
    assert ingest_into(settings, [str(CORPUS_PDFS / name) for name in SMALL]) == 0
    library = open_library(settings)
    by_id = {int(i): v for ids, vecs in library.iter_vectors() for i, v in zip(ids, vecs,
                                                                             strict=True)}
    rows = []
    for paper in library.papers():
        chunks = library.chunks_of(paper.id)
        vectors = np.stack([by_id[c.id] for c in chunks if c.id is not None])
        rows.append(PaperRows(paper, library.pages_of(paper.id), chunks, vectors))
    library.close()
    return rows


def library_with(tmp_path: Path, rows: list[PaperRows], approx_threshold: int) -> Library:
    settings = make_settings(tmp_path / "data", index={"approx_threshold": approx_threshold,
                                                       "use_gpu": "never"})
    library = open_library(settings)
    with library.writer():
        for r in rows:
            library.add_paper(r.paper, r.pages, r.chunks, r.vectors)
        library.refresh()
    return library


class HitChecker:
    """Checks hits against the SQLite file itself: a dense hit's score must be the query's
    inner product with the vector stored under its chunk id, a BM25 hit's text must hold a
    query word. A chunk id that no longer exists is fine (the reader skips it); a chunk id
    that names another passage is not. Chunk ids are never reused, so the hits can be
    checked after the run (the readers search as fast as they can meanwhile)."""

    def __init__(self, settings: Settings) -> None:
        self.db = sqlite3.connect(f"file:{settings.data_dir / 'library.sqlite'}?mode=ro",
                                  uri=True, timeout=30)
        self.wrong: list[str] = []
        self.checked = 0

    def dense(self, query: np.ndarray, hits: list[tuple[int, float]]) -> None:
        for cid, score in hits:
            row = self.db.execute("SELECT vector FROM chunks WHERE id = ?", (cid,)).fetchone()
            if row is None:
                continue
            stored = float(np.frombuffer(row[0], dtype=np.float32) @ query)
            self.checked += 1
            if abs(stored - score) > 1e-3:
                self.wrong.append(f"dense hit {cid}: score {score:.4f}, stored {stored:.4f}")

    def bm25(self, query: str, hits: list[tuple[int, float]]) -> None:
        words = set(tokenize(query))
        for cid, _ in hits:
            row = self.db.execute(
                "SELECT p.title, c.section, c.text FROM chunks c JOIN papers p "
                "ON p.id = c.paper_id WHERE c.id = ?", (cid,)).fetchone()
            if row is None:
                continue
            self.checked += 1
            if not words & set(tokenize(embed_text(*row))):
                self.wrong.append(f"BM25 hit {cid} holds none of {sorted(words)}")


@dataclass
class Searches:
    dense: list[tuple[np.ndarray, list[tuple[int, float]]]] = field(default_factory=list)
    bm25: list[tuple[str, list[tuple[int, float]]]] = field(default_factory=list)


def read(library: Library, rows: list[PaperRows], seed: int, stop: threading.Event,
         out: Searches) -> None:
    """A chat thread: dense searches as fast as it can, a BM25 search every third."""
    rng = np.random.default_rng(seed)
    n = 0
    while not stop.is_set():
        r = rows[rng.integers(len(rows))]
        i = int(rng.integers(len(r.chunks)))
        query = r.vectors[i] + rng.standard_normal(r.vectors.shape[1]).astype(np.float32) * 0.05
        query /= np.linalg.norm(query)
        out.dense.append((query, library.dense_search(query, 20)))
        n += 1
        if n % 3 == 0:
            words = " ".join(r.chunks[i].text.split()[:12])
            out.bm25.append((words, library.bm25_search(words, 20)))


def with_readers(library: Library, rows: list[PaperRows], write: Callable[[], None]) -> None:
    """Run ``write`` while READERS threads search, then check every hit they got."""
    stop = threading.Event()
    outs = [Searches() for _ in range(READERS)]
    with ThreadPoolExecutor(READERS) as pool:
        readers = [pool.submit(read, library, rows, n, stop, outs[n]) for n in range(READERS)]
        try:
            write()
        finally:
            stop.set()
        for r in readers:
            r.result()  # a reader's exception fails the test here
    checker = HitChecker(library.settings)
    for o in outs:
        for query, hits in o.dense:
            checker.dense(query, hits)
        for words, hits in o.bm25:
            checker.bm25(words, hits)
    assert checker.checked > 0
    assert not checker.wrong, checker.wrong[:5]


@pytest.mark.parametrize("approx_threshold", [50, 10**6], ids=["hnsw", "flat"])
def test_searches_while_papers_are_added_and_removed(
        tmp_path: Path, three_papers: list[PaperRows], approx_threshold: int) -> None:
    library = library_with(tmp_path, three_papers, approx_threshold)

    def write() -> None:
        for _ in range(ROUNDS):
            with library.writer():
                for r in three_papers[1:]:
                    assert library.remove_paper(r.paper.id)
                library.refresh()
            with library.writer():
                for r in three_papers[1:]:
                    library.add_paper(r.paper, r.pages, r.chunks, r.vectors)
                library.refresh()

    with_readers(library, three_papers, write)
    assert len(library.papers()) == 3
    library.close()


def merged_pairs(library: Library) -> Callable[[Paper, list[Page]],
                                                 tuple[list[Chunk], np.ndarray]]:
    """A rebuild for `reindex` that needs no model: each new chunk joins two old ones
    (their texts, the normalised sum of their vectors), so ids and texts all change."""
    vectors = {int(i): v for ids, vecs in library.iter_vectors() for i, v in
               zip(ids, vecs, strict=True)}

    def rebuild(paper: Paper, pages: list[Page]) -> tuple[list[Chunk], np.ndarray]:
        old = library.chunks_of(paper.id)
        chunks, vecs = [], []
        for n in range(0, len(old), 2):
            pair = old[n:n + 2]
            chunks.append(Chunk(paper.id, n // 2, "\n".join(c.text for c in pair),
                                pair[0].page_start, pair[-1].page_end, pair[0].char_start,
                                pair[-1].char_end, pair[0].section))
            v = sum(vectors[c.id] for c in pair if c.id is not None)
            vecs.append(v / np.linalg.norm(v))
        return chunks, np.stack(vecs).astype(np.float32)

    return rebuild


@pytest.mark.parametrize("approx_threshold", [50, 10**6], ids=["hnsw", "flat"])
def test_searches_during_reindex(tmp_path: Path, three_papers: list[PaperRows],
                                 approx_threshold: int) -> None:
    library = library_with(tmp_path, three_papers, approx_threshold)
    before = library.chunk_count()

    def write() -> None:
        for _ in range(2):
            with library.writer():
                library.reindex(merged_pairs(library))

    with_readers(library, three_papers, write)
    assert library.chunk_count() < before
    library.close()
