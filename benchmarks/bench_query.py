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
   not FAISS alone; the dense search's recall@10 against exact search over the stored
   vectors (IVF-PQ: with and without the stored vectors re-scoring its candidates); build
   rates, peak memory and file sizes; and one paper added (embedded by the real model,
   stored, indexes extended and saved) until dense and BM25 searches find it.
4. IVF-PQ at scale (4e3 in ``tiny``, 2e4 in ``small``, 1e7 in ``full``): vectors streamed
   in seeded batches, never all in memory (``benchmarks/large.py``), with the default
   settings and with 4-bit fast scan: build time, peak memory, file size, recall@10 against
   exact search with the PQ scores and after re-scoring 4 x k candidates with the exact
   vectors, and single-query latency over a sweep of nprobe; past one shard, the parallel
   shard merge against the shards searched in turn and FAISS's IndexShards.

    python -m benchmarks.bench_query --size small|full [--library DATA_DIR]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import large, synthetic
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
from index.library import Library, embed_text
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
IVFPQ = {"tiny": [4_000], "small": [20_000], "full": [10_000_000]}  # streamed, never in memory
IVFPQ_QUERIES = {"tiny": (50, 20), "small": (100, 50), "full": (200, 100)}  # (recall, latency)
CHUNKS_PER_PAPER = 1_000
ADDED_CHUNKS = 171  # the shared corpus' average chunks per paper (2,568 / 15)
ADDED_MARKER = "zorblaxquantum"  # a word only the added paper holds: the BM25 check


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
                   embedder: SentenceTransformerEmbedder,
                   index: dict[str, object] | None = None) -> tuple[Settings, dict[str, Any]]:
    """A library of ``n`` chunks written and indexed by the app's own code; its build times.
    A library of ``n`` chunks already in ``work/scaled-N`` (kept by ``--keep``) is reused."""
    settings = bench_settings(work / f"scaled-{n}", index=index or {})
    library = Library(settings, embedder)
    reused = library.chunk_count() == n
    with Stopwatch() as write:
        for first in range(0, 0 if reused else n, CHUNKS_PER_PAPER):
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
    progress(f"{n:,} chunks {'reused' if reused else 'written'}; indexing")
    with large.PeakRss() as rss, Stopwatch() as built:
        library.refresh()
    library.close()
    written = {} if reused else {"write_s": round(write.seconds, 1),
                                 "write_per_s": round(n / write.seconds)}
    return settings, {**written, "index_s": round(built.seconds, 1),
                      "index_per_s": round(n / built.seconds),
                      "index_peak_rss_mib": round(rss.peak), "index_settings": index or {}}


def dense_recall(library: Library, sampler: synthetic.Sampler, n_queries: int,
                 n_latency: int) -> dict[str, Any]:
    """recall@10 of ``Library.dense_search`` against exact search over every stored vector
    (queries drawn like the vectors), and its latency; for IVF-PQ also without the stored
    vectors re-scoring the candidates (the PQ scores alone)."""
    queries = sampler(n_queries, np.random.default_rng(large.QUERY_SEED))
    truth = large.TopK(queries, 10)
    ids: list[np.ndarray] = []
    start = 0
    for batch_ids, batch in library.iter_vectors():
        truth.update(start, batch)
        ids.append(batch_ids)
        start += len(batch_ids)
    true_ids = np.concatenate(ids)[truth.rows]
    out: dict[str, Any] = {"queries": n_queries, "recall_at_10": large.recall_at_10(
        [[c for c, _ in library.dense_search(q, 10)] for q in queries], true_ids),
        "dense_ms": large.timed_searches(lambda q: library.dense_search(q, 10),
                                         queries[:n_latency])}
    index = library.live.current().vectors
    if index is not None and index.kind == "ivfpq":
        out["recall_at_10_pq_only"] = large.recall_at_10(
            [[c for c, _ in index.search(q, 10)] for q in queries], true_ids)
        out["dense_ms_pq_only"] = large.timed_searches(lambda q: index.search(q, 10),
                                                       queries[:n_latency])
    return out


def add_one_paper(settings: Settings, embedder: SentenceTransformerEmbedder,
                  texts: list[str]) -> dict[str, Any]:
    """Seconds until a new paper of ADDED_CHUNKS chunks is searchable, dense and BM25: its
    chunks embedded by the real model, stored in SQLite, the indexes extended and saved by
    the writer (``Library.refresh``), then the first searches that find it."""
    library = Library(settings, embedder)
    pid, title = "added-paper", "An added paper"
    chunk_texts = [f"{texts[i % len(texts)]} {ADDED_MARKER}" for i in range(ADDED_CHUNKS)]
    chunks = [Chunk(paper_id=pid, ordinal=i, text=t, page_start=1, page_end=1, char_start=0,
                    char_end=len(t)) for i, t in enumerate(chunk_texts)]
    paper = Paper(id=pid, title=title, authors=(), year=2024, abstract="", categories=(),
                  version=None, arxiv_id=None, pdf_url=None, source="synthetic",
                  content_hash=pid, pages=1)
    with large.PeakRss() as rss:
        with Stopwatch() as embed:
            vectors = embedder.embed([embed_text(title, "", t) for t in chunk_texts])
        with library.writer():
            with Stopwatch() as store:
                ids = library.add_paper(paper, [Page(pid, 1, "synthetic")], chunks, vectors)
            with Stopwatch() as publish:
                library.refresh()
        with Stopwatch() as search:
            dense = ids[3] in [c for c, _ in library.dense_search(vectors[3], 10)]
            sparse = set(ids) <= {c for c, _ in library.bm25_search(ADDED_MARKER, 2 * len(ids))}
    library.close()
    parts = {"embed_s": embed.seconds, "store_s": store.seconds,
             "publish_s": publish.seconds, "first_searches_s": search.seconds}
    return {"chunks": len(ids), "found_dense": dense, "found_bm25": sparse,
            "searchable_s": round(sum(parts.values()), 2), "peak_rss_mib": round(rss.peak),
            **{k: round(v, 3) for k, v in parts.items()}}


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def folder_mib(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


def end_to_end(n: int, texts: list[str], sampler: synthetic.Sampler, work: Path,
               embedder: SentenceTransformerEmbedder, questions: list[str],
               reps: int, recall_queries: int = 100,
               index: dict[str, object] | None = None) -> dict[str, Any]:
    """``Retriever.search`` per stage on a library of ``n`` chunks (after a warm-up); the
    dense search's recall@10 against exact search; adding one paper."""
    settings, build = scaled_library(n, texts, sampler, work, embedder, index)
    progress(f"end to end, {n:,} chunks: built {build}")
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
    progress(f"end to end, {n:,} chunks: searched ({figures['total']})")
    figures["vectors"] = dense_recall(library, sampler, recall_queries, min(recall_queries, 50))
    progress(f"end to end, {n:,} chunks: dense recall {figures['vectors']}")
    figures["index_files_mib"] = folder_mib(library.index_dir)
    figures["sqlite_mib"] = folder_mib(settings.data_dir) - figures["index_files_mib"]
    library.close()
    figures["add_paper"] = add_one_paper(settings, embedder, texts)
    return figures


def end_to_end_table(rows: list[dict[str, Any]]) -> str:
    body = [[f"{r['chunks']:,} ({r['index_kind']})", *(r[s]["p50"] for s in STAGES),
             r["total"]["p95"], r["vectors"]["recall_at_10"],
             r["vectors"].get("recall_at_10_pq_only", "–"), r.get("write_s", "kept"), r["index_s"],
             r["index_peak_rss_mib"], r["index_files_mib"], r["add_paper"]["searchable_s"],
             r["add_paper"]["embed_s"]] for r in rows]
    return ("### End-to-end retrieval at scale, ms (Retriever.search: query embedding, dense, "
            "BM25, fusion, SQLite reads; the corpus' texts cycled, fitted vectors); dense "
            "recall@10 against exact search; one paper added until searchable, s\n\n"
            + markdown_table(["chunks", *(f"{s} p50" for s in STAGES), "total p95",
                              "recall@10", "recall@10 PQ only", "write s", "index s",
                              "index peak RSS MiB", "index files MiB", "add paper s",
                              "of it embedding s"], body))


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


def ivfpq_figures(n: int, sampler: synthetic.Sampler, settings: Settings, size: str,
                  work: Path) -> dict[str, Any]:
    """IVF-PQ over ``n`` streamed fitted vectors with the default settings (and 4-bit fast
    scan beside them): ``large.ivfpq_at_scale``. Small sizes use few lists (the training
    sample / 32) and shards of n / 2 vectors, so the shard merge is measured too."""
    base = settings.index.model_copy(update={"use_gpu": "never"})
    if n < base.shard_size:
        base = base.model_copy(update={"shard_size": n // 2 + 1})
    configs = {"default": base,
               "fast_scan_4bit": base.model_copy(update={"pq_nbits": 4, "pq_m": 96})}
    n_queries, n_latency = IVFPQ_QUERIES[size]
    indexes, figures = large.ivfpq_at_scale(n, sampler, configs, n_queries, n_latency, 10, work)
    del indexes
    return figures


def ivfpq_table(runs: list[dict[str, Any]]) -> str:
    rows: list[list[object]] = []
    for r in runs:
        for name, c in r["configs"].items():
            b, ix = r["build"][name], c["index"]
            for row in c["sweep"]:
                rows.append([f"{r['n']:,}", name, f"{ix['nlist']} / {row['nprobe']}",
                             f"{ix['pq_m']}x{ix['pq_nbits']}", ix["shards"], b["build_s"],
                             ix["file_mib"], row["recall_at_10"],
                             row.get("recall_at_10_rerank_4", "–"),
                             row["pq_only"]["cpu"]["p50"], row["pq_only"]["wall"]["p50"],
                             row.get("reranked", {}).get("wall", {}).get("p50", "–")])
    peaks = "; ".join(f"{r['n']:,}: peak RSS {r['build']['peak_rss_mib']} MiB, indexes "
                      f"{r['build']['indexes_rss_mib']} MiB resident" for r in runs)
    head = ["vectors", "config", "nlist / nprobe", "PQ", "shards", "build s", "file MiB",
            "recall@10 PQ", "recall@10 re-ranked 4k", "p50 CPU ms PQ", "p50 wall ms PQ",
            "p50 wall ms re-ranked"]
    return ("### IVF-PQ on streamed fitted vectors (k = 10, one query at a time; re-ranked: "
            "40 candidates re-scored with the exact vectors)\n\n" + markdown_table(head, rows)
            + f"\n\n{peaks or '–'}")


def run(size: str, out_dir: Path, shared: Path, library: Path | None = None,
        sizes: list[int] | None = None, e2e_sizes: list[int] | None = None,
        ivfpq_sizes: list[int] | None = None, keep: Path | None = None,
        e2e_index: dict[str, object] | None = None) -> dict[str, Any]:
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
        scaled = [end_to_end(n, texts, synthetic.Sampler("fitted", rng, real),
                             keep or Path(tmp), embedder, questions, reps, index=e2e_index)
                  for n in (END_TO_END[size] if e2e_sizes is None else e2e_sizes)]
    results = []
    for n in SYNTHETIC[size] if sizes is None else sizes:
        for data in DATA:
            sampler = synthetic.Sampler(data, rng, real)
            results.append(synthetic.measure(n, sampler, settings.index,
                                             settings.retrieval.fetch_k, RECALL_QUERIES[size],
                                             LATENCY_QUERIES[size], rng))
    with tempfile.TemporaryDirectory() as tmp:
        ivfpq = [ivfpq_figures(n, synthetic.Sampler("fitted", rng, real), settings, size,
                               Path(tmp))
                 for n in (IVFPQ[size] if ivfpq_sizes is None else ivfpq_sizes)]
    figures = {"corpus": corpus, "synthetic": results, "end_to_end": scaled, "ivfpq": ivfpq}
    run_settings = {"index": settings.index.model_dump(),
                    "retrieval": settings.retrieval.model_dump(),
                    "embedding": settings.embedding.model_dump(),
                    "embedding_device": embedder.device,
                    "ivf_default_nprobe": synthetic.IVF_DEFAULT_NPROBE,
                    "synthetic_sizes": sorted({r["n"] for r in results}),
                    "library": str(library) if library else f"built from the {size} papers"}
    tables = [corpus_table(corpus), synthetic_table(results), end_to_end_table(scaled),
              ivfpq_table(ivfpq)]
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
    p.add_argument("--ivfpq", type=int, nargs="*", default=None,
                   help="streamed IVF-PQ sizes instead of the size's own (none: skip)")
    p.add_argument("--keep", type=Path, default=None,
                   help="folder for the end-to-end libraries, kept (and reused when whole)")
    p.add_argument("--e2e-index", nargs="*", default=[], metavar="KEY=VALUE",
                   help="index settings of the end-to-end libraries (e.g. ivf_nlist=1024)")
    args = p.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.e2e_index)
    run(args.size, args.out, args.shared, args.library, args.synthetic, args.end_to_end,
        args.ivfpq, args.keep, dict(overrides))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
