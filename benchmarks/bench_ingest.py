"""Ingest benchmark, stage by stage, on the shared corpus served by the local arXiv stand-in.

Stages, each timed alone: download (``Downloader`` from the stub), extraction (both
extractors, one process; the default one also in a pool of ``ingest.workers`` processes),
chunking (``Chunker``), embedding (``SentenceTransformerEmbedder``), indexing (``Library``:
SQLite, FAISS, BM25). Then the whole ingest as ``paperchat ingest`` runs it (``Ingestor``,
arXiv ids through the stub, the model already loaded) and its wall time divided by the time
of embedding the very same chunks alone: embedding is the floor on a CPU, so the ratio is
the pipeline's overhead (target: at most 1.3). Last, the whole ingest "before": the starting
configuration (``BEFORE``), compared per chunk with the same floor.

    python -m benchmarks.bench_ingest --size small|full [--keep-library DIR]
"""

from __future__ import annotations

import shutil
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
    rate,
    run_main,
    write_results,
)
from core.errors import IngestError
from core.settings import Settings
from core.types import Chunk, Page, PaperMeta
from index.embedder import SentenceTransformerEmbedder
from index.library import Library, embed_text
from ingest import metadata
from ingest.chunk import Chunker
from ingest.extract import EXTRACTORS, extract_document, extract_pages
from ingest.fetch import Downloader
from ingest.pipeline import ingest_items, make_chunker
from ingest.workers import ExtractionPool
from support.arxiv_stub import ArxivStub, StubPaper

NAME = "ingest"
# Papers per size (None: the whole corpus, 15 papers, about 450 pages).
PAPERS: dict[str, list[str] | None] = {
    "tiny": ["1910.13461"],
    "small": ["1707.06347", "1910.13461"],
    "full": None,
}
# The configuration this project started from, measured as the "before" whole ingest:
# pypdf, one extraction process.
BEFORE = {"extractor": "pypdf", "workers": 1}


def pick(stub: ArxivStub, size: str) -> list[StubPaper]:
    wanted = PAPERS[size]
    return list(stub.papers) if wanted is None else [stub.by_id[i] for i in wanted]


def paper_id(paper: StubPaper) -> str:
    return paper.arxiv_id or paper.pdf.stem


def url_of(stub: ArxivStub, paper: StubPaper) -> str:
    return stub.pdf_url(paper.arxiv_id) if paper.arxiv_id else stub.file_url(paper.pdf.name)


# ------------------------------------------------------------------ stages


def stage_download(settings: Settings, stub: ArxivStub, papers: list[StubPaper],
                   dest: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    with Downloader(settings.ingest, dest) as dl, Stopwatch() as sw:
        paths = {paper_id(p): dl.fetch(url_of(stub, p), f"{paper_id(p)}.pdf") for p in papers}
    mb = sum(p.stat().st_size for p in paths.values()) / 2**20
    return {"seconds": round(sw.seconds, 3), "papers": len(paths), "mb": round(mb, 2),
            "mb_per_s": rate(mb, sw.seconds), "papers_per_s": rate(len(paths), sw.seconds)}, paths


def stage_extract(paths: dict[str, Path], extractor: str) -> tuple[dict[str, Any],
                                                                    dict[str, list[Page]]]:
    with Stopwatch() as sw:
        pages = {pid: extract_pages(path, pid, extractor) for pid, path in paths.items()}
    n = sum(len(p) for p in pages.values())
    return {"seconds": round(sw.seconds, 3), "pages": n, "pages_per_s": rate(n, sw.seconds)}, pages


def stage_extract_pool(paths: dict[str, Path], settings: Settings) -> dict[str, Any]:
    """The default extractor as the pipeline runs it: ``extract_document`` (pages, stamp,
    info, hidden-text check) in ``ExtractionPool``'s worker processes (one a PDF, with the
    time and memory limits; the pool's forkserver start included)."""
    ing = settings.ingest
    workers = ing.workers
    with Stopwatch() as sw, ExtractionPool(workers, ing.extract_timeout_s,
                                           ing.extract_memory_mb) as pool:
        futures = [pool.submit(pid, extract_document, path, pid, ing.extractor, ing.max_pages)
                   for pid, path in paths.items()]
        n = sum(len(f.result().pages) for f in futures)
    return {"seconds": round(sw.seconds, 3), "pages": n, "workers": workers,
            "pages_per_s": rate(n, sw.seconds)}


def stage_chunk(chunker: Chunker, pages: dict[str, list[Page]]) -> tuple[dict[str, Any],
                                                                         dict[str, list[Chunk]]]:
    with Stopwatch() as sw:
        chunks = {pid: chunker.chunk(pid, p) for pid, p in pages.items()}
    n_pages = sum(len(p) for p in pages.values())
    n = sum(len(c) for c in chunks.values())
    return {"seconds": round(sw.seconds, 3), "chunks": n, "pages": n_pages,
            "pages_per_s": rate(n_pages, sw.seconds),
            "chunks_per_s": rate(n, sw.seconds)}, chunks


def stage_embed(embedder: SentenceTransformerEmbedder, texts: list[str]) -> tuple[dict[str, Any],
                                                                                 np.ndarray]:
    with Stopwatch() as sw:
        vectors = embedder.embed(texts)
    return {"seconds": round(sw.seconds, 3), "chunks": len(texts),
            "chunks_per_s": rate(len(texts), sw.seconds)}, vectors


def stage_index(settings: Settings, embedder: SentenceTransformerEmbedder,
                titles: dict[str, str], paths: dict[str, Path], pages: dict[str, list[Page]],
                chunks: dict[str, list[Chunk]], vectors: dict[str, np.ndarray]) -> dict[str, Any]:
    """SQLite writes of every paper, then the FAISS and BM25 build (``refresh``)."""
    library = Library(settings, embedder)
    with library.writer(), Stopwatch() as sw:
        for pid in pages:
            meta = PaperMeta(id=pid, title=titles[pid], arxiv_id=pid if pid[0].isdigit() else None)
            paper = metadata.make_paper(meta, str(paths[pid]),
                                        metadata.sha256_file(paths[pid]), pages[pid])
            library.add_paper(paper, pages[pid], chunks[pid], vectors[pid])
        library.refresh()
    library.close()
    n = sum(len(c) for c in chunks.values())
    return {"seconds": round(sw.seconds, 3), "chunks": n, "chunks_per_s": rate(n, sw.seconds)}


def whole_ingest(settings: Settings, embedder: SentenceTransformerEmbedder,
                 items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``paperchat ingest ITEMS`` (as ``run_ingest``, model already loaded); returns the
    figures and the embedded texts of the chunks it stored, in id order."""
    library = Library(settings, embedder)
    with Stopwatch() as sw:
        report = ingest_items(settings, library, items)
    if report.failed:
        reasons = "; ".join(f"{r.item}: {r.reason}" for r in report.failed)
        raise IngestError(f"The benchmark's ingest failed: {reasons}.",
                          "Check that the shared corpus is complete.")
    texts = [text for _, text in library.iter_embed_texts()]
    pages = sum(r.pages for r in report.results)
    library.close()
    return {"seconds": round(sw.seconds, 3), "papers": len(report.results), "pages": pages,
            "chunks": len(texts), "pages_per_s": rate(pages, sw.seconds),
            "chunks_per_s": rate(len(texts), sw.seconds),
            "workers": settings.ingest.workers}, texts


# ------------------------------------------------------------------ the run


def measure_stages(settings: Settings, stub: ArxivStub, papers: list[StubPaper],
                   embedder: SentenceTransformerEmbedder, work: Path
                   ) -> tuple[dict[str, Any], list[str]]:
    """Each stage timed alone; returns the figures and the texts embedded."""
    figures: dict[str, Any] = {}
    figures["download"], paths = stage_download(settings, stub, papers, work / "pdfs")
    pages: dict[str, list[Page]] = {}
    for extractor in EXTRACTORS:
        figures[f"extract_{extractor}"], got = stage_extract(paths, extractor)
        if extractor == settings.ingest.extractor:
            pages = got
    figures["extract_pool"] = stage_extract_pool(paths, settings)
    chunker = make_chunker(settings)
    figures["chunk"], chunks = stage_chunk(chunker, pages)
    titles = {paper_id(p): p.title for p in papers}
    order = [(pid, c) for pid, cs in chunks.items() for c in cs]
    texts = [embed_text(titles[pid], c.section, c.text) for pid, c in order]
    figures["embed"], vectors = stage_embed(embedder, texts)
    by_paper: dict[str, np.ndarray] = {}
    start = 0
    for pid, cs in chunks.items():
        by_paper[pid] = vectors[start:start + len(cs)]
        start += len(cs)
    figures["index"] = stage_index(settings, embedder, titles, paths, pages, chunks, by_paper)
    return figures, texts


def embedding_floor(before: dict[str, Any], before_texts: list[str], after: dict[str, Any],
                    texts: list[str]) -> dict[str, Any]:
    """Embedding-only time of the ingested chunks: the mean of the runs just before and
    just after the whole ingest when both embedded the same texts (it damps a load change
    on a shared machine), else the run after."""
    same = sorted(before_texts) == sorted(texts)
    seconds = (before["seconds"] + after["seconds"]) / 2 if same else after["seconds"]
    return {"seconds": round(seconds, 3), "chunks": len(texts),
            "chunks_per_s": rate(len(texts), seconds), "seconds_before": before["seconds"]
            if same else None, "seconds_after": after["seconds"]}


def prepare_keep(keep: Path) -> None:
    """Empty ``keep`` for a new library, refusing a folder that holds something else."""
    if keep.exists() and any(keep.iterdir()):
        if not (keep / "library.sqlite").is_file():
            raise IngestError(f"{keep} is not empty and holds no paperchat library.",
                              "Give --keep-library an empty or new folder.")
        shutil.rmtree(keep)


def run(size: str, out_dir: Path, shared: Path, keep_library: Path | None = None,
        workers: int | None = None) -> dict[str, Any]:
    """Run the ingest benchmark at ``size`` (``workers``: extraction processes instead of the
    default); writes ``out_dir/ingest.json``; returns it."""
    info = machine()
    with ArxivStub(shared / "corpus") as stub, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        papers = pick(stub, size)
        extra = {"workers": workers} if workers else {}
        settings = bench_settings(work / "stages", ingest={**stub.ingest_settings(), **extra})
        with Stopwatch() as load:
            embedder = SentenceTransformerEmbedder(settings.embedding)
        embedder.embed(["warm-up"])
        figures, stage_texts = measure_stages(settings, stub, papers, embedder, work)
        figures["model_load"] = {"seconds": round(load.seconds, 3)}
        data_dir = keep_library or work / "whole"
        if keep_library is not None:
            prepare_keep(keep_library)
        whole_settings = bench_settings(data_dir, ingest={**stub.ingest_settings(), **extra})
        items = [p.arxiv_id or url_of(stub, p) for p in papers]
        figures["whole_ingest"], texts = whole_ingest(whole_settings, embedder, items)
        after = stage_embed(embedder, texts)[0]
        figures["embed_only_same_chunks"] = embedding_floor(figures["embed"], stage_texts,
                                                            after, texts)
        before_settings = bench_settings(work / "before",
                                         ingest={**stub.ingest_settings(), **BEFORE})
        figures["whole_ingest_before"] = whole_ingest(before_settings, embedder, items)[0]
    floor = figures["embed_only_same_chunks"]
    figures["ratio_whole_to_embed"] = round(figures["whole_ingest"]["seconds"]
                                            / floor["seconds"], 3)
    figures["ratio_whole_to_each_embed_run"] = each_ratio(figures["whole_ingest"], floor)
    b = figures["whole_ingest_before"]  # other text, so other chunks: compared per chunk
    figures["ratio_before_to_embed"] = round(b["seconds"] / b["chunks"]
                                             / (floor["seconds"] / floor["chunks"]), 3)
    run_settings = {"papers": [paper_id(p) for p in papers], "device": embedder.device,
                    **{k: settings.model_dump()[k] for k in ("ingest", "chunking", "embedding")}}
    run_settings["ingest"] = {k: run_settings["ingest"][k]
                              for k in ("extractor", "workers", "request_interval_s")}
    doc = {"settings": run_settings, "figures": figures}
    write_results(out_dir, NAME, size, run_settings, figures, [table(figures)], info)
    return doc


def each_ratio(whole: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """Whole ingest / each embedding-only run (before and after it), not only their mean: a
    load change between the runs shows as two different ratios."""
    def ratio(seconds: float | None) -> float | None:
        return round(whole["seconds"] / seconds, 3) if seconds else None
    return {"before": ratio(floor["seconds_before"]), "after": ratio(floor["seconds_after"])}


def floor_note(f: dict[str, Any]) -> str:
    e = f["embed_only_same_chunks"]
    if e["seconds_before"] is None:
        return "run after the ingest"
    return f"mean of {e['seconds_before']} s before and {e['seconds_after']} s after the ingest"


def table(f: dict[str, Any]) -> str:
    def row(stage: str, key: str, items: str, note: str = "") -> list[object]:
        g = f[key]
        return [stage, g["seconds"], items, g.get("pages_per_s", "–"),
                g.get("chunks_per_s", "–"), note]

    d, w, b = f["download"], f["whole_ingest"], f["whole_ingest_before"]
    rows = [
        row("download (stub, HTTP)", "download", f"{d['papers']} PDFs, {d['mb']} MiB",
            f"{d['mb_per_s']} MiB/s"),
        *[row(f"extract {e} (1 process)", f"extract_{e}", f"{f[f'extract_{e}']['pages']} pages")
          for e in EXTRACTORS],
        row(f"extract as ingest does ({f['extract_pool']['workers']} at a time)",
            "extract_pool", f"{f['extract_pool']['pages']} pages",
            "a process a PDF, hidden-text check, pool start included"),
        row("chunk", "chunk", f"{f['chunk']['chunks']} chunks"),
        row("embed", "embed", f"{f['embed']['chunks']} chunks"),
        row("index (SQLite + FAISS + BM25)", "index", f"{f['index']['chunks']} chunks"),
        row("whole ingest (Ingestor)", "whole_ingest",
            f"{w['papers']} papers, {w['pages']} pages, {w['chunks']} chunks"),
        row("whole ingest before (pypdf, 1 extraction process)", "whole_ingest_before",
            f"{b['papers']} papers, {b['pages']} pages, {b['chunks']} chunks",
            "the starting configuration"),
        row("embedding only, same chunks", "embed_only_same_chunks",
            f"{f['embed_only_same_chunks']['chunks']} chunks", floor_note(f)),
        row("model load (once per process)", "model_load", ""),
    ]
    head = ["stage", "seconds", "items", "pages/s", "chunks/s", "note"]
    each = f.get("ratio_whole_to_each_embed_run", {})
    runs = "; ".join(f"{k}: {v}" for k, v in each.items() if v is not None)
    ratio = (f"\nwhole ingest / embedding only = **{f['ratio_whole_to_embed']}** "
             f"(against each embedding run, {runs or '–'}; target ≤ 1.3; "
             f"before, per chunk: {f['ratio_before_to_embed']})")
    return "### Ingest\n\n" + markdown_table(head, rows) + ratio


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--keep-library", type=Path, default=None,
                   help="build the whole-ingest library here (for the query benchmark)")
    p.add_argument("--workers", type=int, default=None,
                   help="extraction processes (default: the ingest.workers setting)")
    args = p.parse_args(argv)
    run(args.size, args.out, args.shared, args.keep_library, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
