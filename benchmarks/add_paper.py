"""Adding one paper to a large library: seconds until it is searchable (issue 11).

Two measurements, both rerunnable at any size:

* ``vector_add``: the vector index alone (the kind ``choose_kind`` gives ``n`` chunks, built
  from a synthetic stream): add one paper's vectors, the first search that finds it, and
  saving the index (the library saves before a refresh returns).
* ``library_add``: the whole path through ``index.library.Library`` on a library of ``n``
  synthetic passages (real chunk texts of the corpus, cycled; fitted vectors): store the
  paper, ``refresh`` (vector index extended, BM25 as the library does it, files saved), and
  the first dense and BM25 searches that find it. BM25 is also timed alone (its rebuild,
  the part that grows with the library on main) and the vector index's own add and save.

    python -m benchmarks.add_paper --passages 1000000 [--vector-only]

A paper has CHUNKS_PER_PAPER chunks: the shared corpus's average (2,568 chunks / 15 papers).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import large
from benchmarks.common import Stopwatch, bench_settings
from benchmarks.synthetic import DIM, Sampler
from core.settings import IndexSettings
from core.types import Chunk, Page, Paper
from index.bm25 import BM25Index
from index.embedder import Embedder
from index.kinds import choose_kind
from index.library import Library, embed_text
from index.vectors import VectorIndex

CHUNKS_PER_PAPER = 171
MARKER = "zorblaxquantum"  # a word only the added paper contains, for the BM25 check
NEW_SEED = 99  # the added paper's vectors
BUILD_SEED = 1  # the library's vectors


class StoredVectors:
    """An embedder that only names the model and its size: the benchmark stores vectors it
    drew, as the library's manifest needs nothing else."""

    def __init__(self, name: str, dim: int = DIM) -> None:
        self.name = name
        self.dim = dim

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        raise NotImplementedError("the benchmark stores vectors it drew")


def paper(n: int, texts: list[str], start: int) -> tuple[Paper, list[Page], list[Chunk]]:
    pid = f"synthetic-{n}"
    p = Paper(pid, f"Synthetic paper {n}", ("A. Author",), 2024, "", ("cs.CL",), None, None,
              None, "benchmark", pid, 1)
    chunks = [Chunk(pid, i, texts[(start + i) % len(texts)], 1, 1, 0, 10)
              for i in range(CHUNKS_PER_PAPER)]
    return p, [Page(pid, 1, "synthetic")], chunks


def new_paper(texts: list[str]) -> tuple[Paper, list[Page], list[Chunk]]:
    p, pages, chunks = paper(10**9, texts, 7)
    marked = [Chunk(c.paper_id, c.ordinal, f"{c.text} {MARKER}", 1, 1, 0, 10) for c in chunks]
    return p, pages, marked


def vector_add(n: int, sampler: Sampler, settings: IndexSettings,
               index: VectorIndex | None = None) -> dict[str, Any]:
    """One paper added to a vector index of ``n`` synthetic vectors (built here unless
    given): add, first search finding it, save."""
    out: dict[str, Any] = {"n": n, "kind": choose_kind(n, settings, gpus=0)}
    if index is None:
        with large.PeakRss() as rss, Stopwatch() as sw:
            index = VectorIndex(DIM, settings, out["kind"])
            for start, x in large.stream(sampler, BUILD_SEED, n):
                index.add(np.arange(start + 1, start + 1 + len(x)), x)
            index.search(x[0], 1)  # trains IVF-PQ on what is pending, if anything is
        out.update(build_s=round(sw.seconds, 1), build_peak_rss_mib=rss.peak)
    x = large.draw(sampler, NEW_SEED, 0, CHUNKS_PER_PAPER)
    ids = np.arange(len(index) + 1, len(index) + 1 + len(x))
    with Stopwatch() as add:
        index.add(ids, x)
    with Stopwatch() as first:
        found = index.search(x[3], 10)
    with tempfile.TemporaryDirectory() as tmp, Stopwatch() as save:
        index.save(Path(tmp))
    out.update(add_s=round(add.seconds, 3), first_search_s=round(first.seconds, 3),
               save_s=round(save.seconds, 3), found=int(ids[3]) in [c for c, _ in found],
               searchable_s=round(add.seconds + first.seconds + save.seconds, 3),
               searchable_without_save_s=round(add.seconds + first.seconds, 3))
    return out


def fill_library(library: Library, n: int, sampler: Sampler, texts: list[str]) -> float:
    """Store ``n`` passages in papers of CHUNKS_PER_PAPER; returns the seconds."""
    with Stopwatch() as sw:
        vectors = large.stream(sampler, BUILD_SEED, n)
        pending = np.zeros((0, DIM), dtype=np.float32)
        for number, start in enumerate(range(0, n, CHUNKS_PER_PAPER)):
            size = min(CHUNKS_PER_PAPER, n - start)
            while len(pending) < size:
                pending = np.concatenate([pending, next(vectors)[1]])
            p, pages, chunks = paper(number, texts, start)
            library.add_paper(p, pages, chunks[:size], pending[:size])
            pending = pending[size:]
    return sw.seconds


def library_add(n: int, sampler: Sampler, texts: list[str], work: Path,
                index: dict[str, object] | None = None) -> dict[str, Any]:
    """The whole path: one paper added to a library of ``n`` passages until dense and BM25
    searches find it."""
    settings = bench_settings(work / "library", index=index or {})
    embedder: Embedder = StoredVectors(settings.embedding.model)
    library = Library(settings, embedder)
    out: dict[str, Any] = {"n": n, "kind": choose_kind(n, settings.index, gpus=0)}
    out["fill_s"] = round(fill_library(library, n, sampler, texts), 1)
    with large.PeakRss() as rss, Stopwatch() as built:
        library.refresh()
    out.update(first_build_s=round(built.seconds, 1), first_build_peak_rss_mib=rss.peak)
    p, pages, chunks = new_paper(texts)
    x = large.draw(sampler, NEW_SEED, 0, CHUNKS_PER_PAPER)
    with large.PeakRss() as rss:
        with Stopwatch() as store:
            ids = library.add_paper(p, pages, chunks, x)
        with Stopwatch() as refresh:
            library.refresh()
    with Stopwatch() as dense:
        dense_ok = ids[3] in [c for c, _ in library.dense_search(x[3], 10)]
    with Stopwatch() as bm25:
        bm25_ok = set(ids) <= {c for c, _ in library.bm25_search(MARKER, 2 * len(ids))}
    out.update(store_s=round(store.seconds, 3), refresh_s=round(refresh.seconds, 3),
               first_searches_s=round(dense.seconds + bm25.seconds, 3),
               found_dense=dense_ok, found_bm25=bm25_ok, peak_rss_mib=rss.peak,
               searchable_s=round(store.seconds + refresh.seconds + dense.seconds
                                  + bm25.seconds, 3))
    out["parts"] = parts(library, settings.index, n + len(ids))
    library.close()
    return out


def parts(library: Library, settings: IndexSettings, n: int) -> dict[str, float]:
    """BM25 rebuilt over every passage (what main's refresh does on each change) and the
    vector index's own add and save of one paper, each timed alone."""
    texts: list[str] = []
    ids: list[int] = []
    for cid, text in library.iter_embed_texts():
        ids.append(cid)
        texts.append(text)
    with Stopwatch() as bm25:
        BM25Index().build(np.asarray(ids, dtype=np.int64), texts)
    del texts
    index_dir = library.index_dir
    vectors = VectorIndex.load(index_dir, DIM, settings, choose_kind(n, settings, gpus=0))
    x = np.asarray(next(library.iter_vectors())[1][:CHUNKS_PER_PAPER])
    with Stopwatch() as add:
        vectors.add(np.arange(10**9, 10**9 + len(x)), x)
        vectors.search(x[0], 1)
    with tempfile.TemporaryDirectory() as tmp, Stopwatch() as save:
        vectors.save(Path(tmp))
    return {"bm25_rebuild_s": round(bm25.seconds, 3), "vector_add_s": round(add.seconds, 3),
            "vector_save_s": round(save.seconds, 3)}


def corpus_texts_and_vectors(db: Path) -> tuple[list[str], np.ndarray]:
    """Chunk texts and vectors of a built library's SQLite file (read only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT c.text, c.vector, p.title, c.section FROM chunks c "
                       "JOIN papers p ON p.id = c.paper_id ORDER BY c.id").fetchall()
    con.close()
    texts = [embed_text(title, section, text) for text, _, title, section in rows]
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, DIM)
    return texts, vectors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--passages", type=int, default=100_000)
    p.add_argument("--library", type=Path, required=True,
                   help="data folder of a built library (its chunk texts and vectors)")
    p.add_argument("--vector-only", action="store_true", help="skip the whole library path")
    args = p.parse_args(argv)
    texts, real = corpus_texts_and_vectors(args.library / "library.sqlite")
    sampler = Sampler("fitted", np.random.default_rng(0), real)
    settings = bench_settings(args.library)
    print(vector_add(args.passages, sampler, settings.index))
    if not args.vector_only:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            print(library_add(args.passages, sampler, texts, Path(tmp)))
            print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
