"""Index benchmark: how long until a change is searchable, and what readers pay.

A library of N chunks (real passages of the shared corpus PDFs, repeated with a marker
word each, and random unit 384-d vectors; papers of 200 chunks) is built once by the
writer; then one paper is added (five times) and one removed, each published by the writer
(``Library.refresh`` under the writer lock: vector index copied and extended, a BM25 shard
added, files saved, snapshot swapped in). Against it: one whole BM25 build over all chunks,
which is what every change cost before BM25 had shards. Readers: a fresh process's first
search (it loads the saved files, building nothing) and the search latency of BM25 over one
shard and over several (scores merged with global statistics), and of the vector index.

    python -m benchmarks.bench_index --size tiny|small|full
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    Stopwatch,
    bench_settings,
    machine,
    markdown_table,
    parser,
    percentiles,
    run_main,
    write_results,
)
from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.bm25 import BM25Index, ShardBuilder
from index.library import Library
from ingest.extract import extract_pages

NAME = "index"
SIZES = {"tiny": [2_000], "small": [20_000], "full": [20_000, 200_000]}
PAPER_CHUNKS = 200
DIM = 384
ADDS = 5
QUERIES = 50


class Vectors:
    """The manifest needs an embedder's name and size; the vectors are made here."""

    name = "benchmark-vectors"
    dim = DIM
    backend = "torch"
    vectors = "fp32"

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        raise AssertionError("not used")


def passages(shared: Path, limit: int = 4_000) -> list[str]:
    """Passages of about 120 words from the corpus PDFs."""
    out: list[str] = []
    for pdf in sorted((shared / "corpus" / "pdfs").glob("*.pdf")):
        words = " ".join(p.text for p in extract_pages(pdf, pdf.stem)).split()
        out += [" ".join(words[i:i + 120]) for i in range(0, len(words), 120)]
        if len(out) >= limit:
            break
    return out


def add_paper(library: Library, n: int, texts: list[str], rng: np.random.Generator) -> None:
    pid = f"p{n}"
    paper = Paper(pid, f"Paper {n}", (), 2020, "", (), None, None, None, "bench", pid, 1)
    chunks = [Chunk(pid, i, f"{texts[(n * PAPER_CHUNKS + i) % len(texts)]} mark{n}x{i}",
                    1, 1, 0, 1) for i in range(PAPER_CHUNKS)]
    x = rng.standard_normal((PAPER_CHUNKS, DIM)).astype(np.float32)
    library.add_paper(paper, [Page(pid, 1, "")], chunks, x / np.linalg.norm(x, axis=1,
                                                                              keepdims=True))


def publish(library: Library, change: Any) -> float:
    """Seconds from the change's commit until readers in this process search it."""
    with library.writer():
        change()
        with Stopwatch() as sw:
            library.refresh()
    return sw.seconds


def search_ms(search: Any, queries: list[Any]) -> dict[str, float]:
    times = []
    for q in queries:
        with Stopwatch() as sw:
            search(q)
        times.append(sw.seconds * 1000)
    return percentiles(times)


def measure(n: int, settings: Settings, texts: list[str]) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    library = Library(settings, Vectors())
    papers = n // PAPER_CHUNKS
    with library.writer():
        for p in range(papers):
            add_paper(library, p, texts, rng)
        with Stopwatch() as first:
            library.refresh()
    adds = [publish(library, lambda p=p: add_paper(library, p, texts, rng))
            for p in range(papers, papers + ADDS)]
    removal = publish(library, lambda: library.remove_paper("p1"))
    every = [t for _, t in library.iter_embed_texts()]
    with Stopwatch() as whole:
        builder = ShardBuilder()
        builder.add(range(len(every)), every)
        one_shard = BM25Index((builder.build(),))
    words = [" ".join(t.split()[5:12]) for t in texts[:QUERIES]]
    vecs = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    snap = library.live.current()
    assert snap.bm25 is not None and snap.vectors is not None
    figures = {
        "n": n, "kind": snap.vectors.kind, "first_build_s": round(first.seconds, 3),
        "add_paper_ms": percentiles([s * 1000 for s in adds]),
        "remove_paper_s": round(removal, 3), "bm25_whole_build_s": round(whole.seconds, 3),
        "bm25_shards": len(snap.bm25.shards),
        "bm25_ms_shards": search_ms(lambda q: snap.bm25.search(q, 50), words),
        "bm25_ms_one_shard": search_ms(lambda q: one_shard.search(q, 50), words),
        "dense_ms": search_ms(lambda q: snap.vectors.search(q, 50), list(vecs)),
    }
    library.close()
    reader = Library(settings, Vectors())
    with Stopwatch() as load:
        reader.dense_search(vecs[0], 10)
    figures["reader_first_search_s"] = round(load.seconds, 3)
    figures["reader_built"] = reader.live.built_here
    reader.close()
    return figures


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        add = r["add_paper_ms"]
        rows.append([f"{r['n']:,} ({r['kind']})", r["first_build_s"],
                     f"{add['p50'] / 1000:.3g} ({add['p95'] / 1000:.3g})", r["remove_paper_s"],
                     r["bm25_whole_build_s"],
                     round(r["bm25_whole_build_s"] / (add["p50"] / 1000), 1),
                     r["reader_first_search_s"],
                     f"{r['bm25_ms_shards']['p50']:.3g} ({r['bm25_shards']})",
                     r["bm25_ms_one_shard"]["p50"], r["dense_ms"]["p50"]])
    head = ["chunks", "first build s", "add a paper: searchable after s p50 (p95)",
            "remove s", "whole BM25 build s (before: every change)", "ratio",
            "reader's first search s (loads)", "BM25 p50 ms (shards)", "BM25 p50 ms 1 shard",
            "dense p50 ms"]
    return ("### Making a change searchable (writer publishes; 200-chunk papers)\n\n"
            + markdown_table(head, rows))


def run(size: str, out_dir: Path, shared: Path) -> dict[str, Any]:
    info = machine()
    texts = passages(shared)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES[size]:
            settings = bench_settings(Path(tmp) / f"lib{n}",
                                      embedding={"model": Vectors.name})
            results.append(measure(n, settings, texts))
    run_settings = {"index": settings.index.model_dump(), "paper_chunks": PAPER_CHUNKS,
                    "adds": ADDS, "queries": QUERIES, "dim": DIM}
    write_results(out_dir, NAME, size, run_settings, {"sizes": results}, [table(results)], info)
    return {"settings": run_settings, "figures": results}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else NAME).parse_args(argv)
    run(args.size, args.out, args.shared)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
