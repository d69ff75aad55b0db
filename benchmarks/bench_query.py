"""Query benchmark: retrieval latency on the shared corpus, and FAISS index scaling.

1. The shared corpus (or the library given by ``--library``): ``Retriever.search`` latency
   p50/p95 per stage (query embedding, dense search, BM25, fusion) and in total, over the dev
   questions; and the total with 1 and 2 torch threads for the query embedding
   (``embedding.query_threads``).
2. Synthetic libraries (1e4 vectors in ``small``; 1e4, 1e5 and 1e6 in ``full``) of random
   normalised 384-d vectors and of vectors fitted to the library's real ones (see
   ``benchmarks/synthetic.py``): flat, HNSW and IVF; build time, memory, single-query
   latency with 1 and 2 OpenMP threads, and recall@10 against flat over a sweep of
   efSearch / nprobe.
3. End to end at scale (1e3 in ``tiny``, 1e4 in ``small``, 1e6 in ``full``): a real library
   of that many chunks (the corpus' chunk texts cycled under synthetic paper titles, fitted
   vectors) written through ``Library.add_paper`` and indexed by ``Library.refresh`` (SQLite,
   HNSW or flat as the settings choose, BM25), then ``Retriever.search`` latency per stage
   over the dev questions: query embedding, dense search, BM25, fusion and the SQLite reads,
   not FAISS alone.

    python -m benchmarks.bench_query --size small|full [--library DATA_DIR]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import synthetic
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
from core.errors import EmptyLibraryError
from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.embedder import SentenceTransformerEmbedder
from index.library import Library
from index.vectors import choose_kind
from rag.retrieve import Retriever

NAME = "query"
SYNTHETIC = {"tiny": [1_000], "small": [10_000], "full": [10_000, 100_000, 1_000_000]}
DATA = ("fitted", "random")
RECALL_QUERIES = {"tiny": 50, "small": 200, "full": 200}
LATENCY_QUERIES = {"tiny": 20, "small": 100, "full": 100}
CORPUS_QUESTIONS = {"tiny": (5, 1), "small": (20, 2), "full": (100, 3)}  # (questions, reps)
STAGES = ("embed", "dense", "bm25", "fuse", "total")
END_TO_END = {"tiny": [1_000], "small": [10_000], "full": [1_000_000]}
CHUNKS_PER_PAPER = 1_000


# ------------------------------------------------------------------ the shared corpus


def dev_questions(shared: Path, n: int) -> list[str]:
    path = shared / "eval" / "dev_questions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [str(r["question"]) for r in rows][:n]


def corpus_latency(settings: Settings, embedder: SentenceTransformerEmbedder,
                   questions: list[str], reps: int) -> tuple[dict[str, Any], np.ndarray]:
    """``Retriever.search`` timings per stage over ``questions`` x ``reps`` (after a warm-up),
    and the library's chunk vectors."""
    library = Library(settings, embedder)
    if library.chunk_count() == 0:
        raise EmptyLibraryError()
    retriever = Retriever(settings, library)
    with Stopwatch() as first:
        retriever.search(questions[0])  # loads the FAISS and BM25 files
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for _ in range(reps):
        for q in questions:
            for stage, ms in retriever.search(q).timings_ms.items():
                samples.setdefault(stage, []).append(ms)
    figures: dict[str, Any] = {s: percentiles(v) for s, v in samples.items()}
    figures["chunks"] = library.chunk_count()
    figures["papers"] = len(library.papers())
    figures["first_query_ms"] = round(first.seconds * 1000, 1)
    chosen = embedder.settings
    for threads in (1, 2):
        embedder.settings = chosen.model_copy(update={"query_threads": threads})
        totals = [retriever.search(q).timings_ms for q in questions]
        figures[f"query_threads_{threads}"] = {
            s: percentiles([t[s] for t in totals]) for s in ("embed", "total")}
    embedder.settings = chosen
    real = np.concatenate([v for _, v in library.iter_vectors()])
    library.close()
    return figures, real


def corpus_library(size: str, shared: Path, library: Path | None, work: Path,
                   embedder: SentenceTransformerEmbedder) -> Settings:
    """Settings of the library to query: ``library`` if given, else one built here."""
    if library is not None:
        return bench_settings(library)
    from benchmarks.bench_ingest import pick, url_of, whole_ingest
    from support.arxiv_stub import ArxivStub

    with ArxivStub(shared / "corpus") as stub:
        settings = bench_settings(work / "corpus", ingest=stub.ingest_settings())
        whole_ingest(settings, embedder, [p.arxiv_id or url_of(stub, p) for p in pick(stub, size)])
    return settings


# ------------------------------------------------------------- end to end at scale


def scaled_library(n: int, texts: list[str], sampler: synthetic.Sampler, work: Path,
                   embedder: SentenceTransformerEmbedder) -> tuple[Settings, dict[str, Any]]:
    """A library of ``n`` chunks written and indexed by the app's own code; its build times."""
    settings = bench_settings(work / f"scaled-{n}")
    library = Library(settings, embedder)
    with Stopwatch() as write:
        for first in range(0, n, CHUNKS_PER_PAPER):
            m = min(CHUNKS_PER_PAPER, n - first)
            pid = f"synthetic-{first // CHUNKS_PER_PAPER:05d}"
            chunks = [Chunk(paper_id=pid, ordinal=i, text=t, page_start=1, page_end=1,
                            char_start=0, char_end=len(t))
                      for i, t in enumerate(texts[(first + j) % len(texts)] for j in range(m))]
            paper = Paper(id=pid, title=f"Synthetic paper {first // CHUNKS_PER_PAPER}",
                          authors=(), year=2024, abstract="", categories=(), version=None,
                          arxiv_id=None, pdf_url=None, source="synthetic",
                          content_hash=pid, pages=1)
            library.add_paper(paper, [Page(pid, 1, "synthetic")], chunks, sampler(m))
    with Stopwatch() as index:
        library.refresh()
    library.close()
    return settings, {"write_s": round(write.seconds, 1), "index_s": round(index.seconds, 1)}


def end_to_end(n: int, texts: list[str], sampler: synthetic.Sampler, work: Path,
               embedder: SentenceTransformerEmbedder, questions: list[str],
               reps: int) -> dict[str, Any]:
    """``Retriever.search`` per stage on a library of ``n`` chunks (after a warm-up)."""
    settings, build = scaled_library(n, texts, sampler, work, embedder)
    library = Library(settings, embedder)
    retriever = Retriever(settings, library)
    with Stopwatch() as first:
        retriever.search(questions[0])
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for _ in range(reps):
        for q in questions:
            for stage, ms in retriever.search(q).timings_ms.items():
                samples.setdefault(stage, []).append(ms)
    figures: dict[str, Any] = {s: percentiles(v) for s, v in samples.items()}
    figures.update(n=n, chunks=library.chunk_count(), first_query_ms=round(
        first.seconds * 1000, 1), index_kind=choose_kind(n, settings.index), **build)
    library.close()
    return figures


def end_to_end_table(rows: list[dict[str, Any]]) -> str:
    body = [[f"{r['chunks']:,} ({r['index_kind']})", *(r[s]["p50"] for s in STAGES),
             r["total"]["p95"], r["write_s"], r["index_s"]] for r in rows]
    return ("### End-to-end retrieval at scale, ms (Retriever.search: query embedding, dense, "
            "BM25, fusion, SQLite reads; the corpus' texts cycled, fitted vectors)\n\n"
            + markdown_table(["chunks", *(f"{s} p50" for s in STAGES), "total p95",
                              "write s", "index s"], body))


# ------------------------------------------------------------------ the run


def corpus_table(c: dict[str, Any]) -> str:
    rows = [[s, c[s]["p50"], c[s]["p95"]] for s in STAGES]
    t1, t2 = c["query_threads_1"], c["query_threads_2"]
    rows.append(["total, query_threads 1 (embed p50)", f"{t1['total']['p50']:.3g} "
                 f"({t1['embed']['p50']:.3g})", t1["total"]["p95"]])
    rows.append(["total, query_threads 2 (embed p50)", f"{t2['total']['p50']:.3g} "
                 f"({t2['embed']['p50']:.3g})", t2["total"]["p95"]])
    title = (f"### Retrieval latency, ms ({c['papers']} papers, {c['chunks']} chunks, "
             f"{c['total']['n']} searches; target p50 total ≤ 20 ms)\n\n")
    return title + markdown_table(["stage", "p50", "p95"], rows)


def synthetic_table(sizes: list[dict[str, Any]]) -> str:
    rows: list[list[object]] = []
    for s in sizes:
        n, f = f"{s['n']:,} {s['data']}", s["flat"]
        rows.append([n, "flat", "–", f["build_s"], f["memory_mib"], f["latency_1t"]["p50"],
                     f["latency_1t"]["p95"], f["latency_2t"]["p50"], 1.0])
        for kind, label in (("hnsw", "efSearch"), ("ivf", "nprobe")):
            g = s[kind]
            if "skipped" in g:
                rows.append([n, kind, g["skipped"], "–", "–", "–", "–", "–", "–"])
                continue
            extra = f", nlist {g['nlist']}" if kind == "ivf" else ""
            for r in g["sweep"]:
                two = r.get("latency_2t", {}).get("p50", "")
                rows.append([n, kind, f"{label} {r['param']}{extra}", g["build_s"],
                             g["memory_mib"], r["latency_1t"]["p50"], r["latency_1t"]["p95"],
                             two, r["recall_at_10"]])
    head = ["vectors", "index", "parameters", "build s", "MiB", "p50 ms 1 thread",
            "p95 ms 1 thread", "p50 ms 2 threads", "recall@10"]
    builds = [f"{s['n']:,}: HNSW {s['hnsw']['build_s_1t']} s, IVF {s['ivf']['build_s_1t']} s"
              for s in sizes if "build_s_1t" in s["hnsw"]]
    return ("### FAISS on synthetic 384-d vectors (k = 50, one query at a time)\n\n"
            + markdown_table(head, rows)
            + "\n\nBuild with 1 OpenMP thread instead of 2 (fitted data): "
            + ("; ".join(builds) or "–"))


def run(size: str, out_dir: Path, shared: Path, library: Path | None = None,
        sizes: list[int] | None = None, e2e_sizes: list[int] | None = None) -> dict[str, Any]:
    """Run the query benchmark at ``size``; writes ``out_dir/query.json``; returns it."""
    info = machine()
    n_questions, reps = CORPUS_QUESTIONS[size]
    with tempfile.TemporaryDirectory() as tmp:
        embedder = SentenceTransformerEmbedder(bench_settings(Path(tmp) / "x").embedding)
        settings = corpus_library(size, shared, library, Path(tmp), embedder)
        questions = dev_questions(shared, n_questions)
        corpus, real = corpus_latency(settings, embedder, questions, reps)
        rng = np.random.default_rng(0)
        source = Library(settings, embedder)
        texts = [c.text for p in source.papers() for c in source.chunks_of(p.id)]
        source.close()
        scaled = [end_to_end(n, texts, synthetic.Sampler("fitted", rng, real), Path(tmp),
                             embedder, questions, reps)
                  for n in (END_TO_END[size] if e2e_sizes is None else e2e_sizes)]
    results = []
    for n in SYNTHETIC[size] if sizes is None else sizes:
        for data in DATA:
            sampler = synthetic.Sampler(data, rng, real)
            results.append(synthetic.measure(n, sampler, settings.index,
                                             settings.retrieval.fetch_k, RECALL_QUERIES[size],
                                             LATENCY_QUERIES[size], rng))
    figures = {"corpus": corpus, "synthetic": results, "end_to_end": scaled}
    run_settings = {"index": settings.index.model_dump(),
                    "retrieval": settings.retrieval.model_dump(),
                    "embedding": settings.embedding.model_dump(),
                    "embedding_device": embedder.device,
                    "ivf_default_nprobe": synthetic.IVF_DEFAULT_NPROBE,
                    "synthetic_sizes": sorted({r["n"] for r in results}),
                    "library": str(library) if library else f"built from the {size} papers"}
    tables = [corpus_table(corpus), synthetic_table(results), end_to_end_table(scaled)]
    write_results(out_dir, NAME, size, run_settings, figures, tables, info)
    return {"settings": run_settings, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--library", type=Path, default=None,
                   help="data folder of a built library (else the size's papers are ingested)")
    p.add_argument("--synthetic", type=int, nargs="*", default=None,
                   help="synthetic library sizes instead of the size's own (none: corpus only)")
    p.add_argument("--end-to-end", type=int, nargs="*", default=None,
                   help="end-to-end library sizes instead of the size's own (none: skip)")
    args = p.parse_args(argv)
    run(args.size, args.out, args.shared, args.library, args.synthetic, args.end_to_end)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
