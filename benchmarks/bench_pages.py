"""Page viewer benchmark: how fast a cited page is rendered and highlighted, and how many
passages are found on their pages.

1. Latency (``ingest.pageview.PageView``, what the chat's routes call): for sampled chunks,
   the highlight of the passage and the image of its first page at scale 2 (144 dpi), per
   page. *Cold*: a new ``PageView`` (no open PDF, no cached characters) and an empty image
   cache; *cached*: the same request again (image read from the disk cache, highlight from
   memory).
2. Accuracy: every chunk of the library located on its pages; the share whose text is fully
   matched to pdfium's characters (and so to their boxes), the share of their characters
   matched, the repairs needed (why a part was not found whole) and the misses by cause.

    python -m benchmarks.bench_pages --size small|full [--library DATA_DIR]
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
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
from core.types import Chunk
from index.library import Catalog
from ingest.pages import (
    MOVED_WORD,
    Located,
    PageChars,
    PdfPages,
    char_key,
    locate,
    passage_parts,
)
from ingest.pageview import PageView

NAME = "pages"
SAMPLES = {"tiny": 4, "small": 20, "full": 60}  # chunks timed cold and cached
SCALE = 2.0


def library_settings(size: str, shared: Path, library: Path | None, work: Path) -> Settings:
    if library is not None:
        return bench_settings(library)
    from benchmarks.bench_query import corpus_library
    from index.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(bench_settings(work / "x").embedding)
    return corpus_library(size, shared, None, work, embedder)


def all_chunks(catalog: Catalog) -> list[Chunk]:
    return [c for p in catalog.papers() for c in catalog.chunks_of(p.id)]


def latency(catalog: Catalog, chunks: list[Chunk], work: Path) -> dict[str, Any]:
    """Cold and cached render + highlight of the first page of each sampled chunk, ms."""
    wall: dict[str, list[float]] = {"cold": [], "cached": []}
    cpu: dict[str, list[float]] = {"cold": [], "cached": []}
    for i, chunk in enumerate(chunks):
        cache = work / f"cache-{i}"
        view = PageView(catalog, cache, cache_mb=500)
        assert chunk.id is not None
        try:
            for case in ("cold", "cached"):
                start, start_cpu = time.perf_counter(), time.process_time()
                found = view.highlight(chunk.id)
                image = view.page_image(chunk.paper_id, found.first_page, SCALE)
                image.read_bytes()  # what serving it costs
                wall[case].append((time.perf_counter() - start) * 1000)
                cpu[case].append((time.process_time() - start_cpu) * 1000)
        finally:
            view.close()
            shutil.rmtree(cache, ignore_errors=True)
    # CPU time of this process: what the work costs when the machine is shared
    return {"cold_ms": percentiles(wall["cold"]), "cached_ms": percentiles(wall["cached"]),
            "cold_cpu_ms": percentiles(cpu["cold"]), "cached_cpu_ms": percentiles(cpu["cached"]),
            "scale": SCALE, "chunks": len(chunks)}


def miss_cause(chunk: Chunk, start: int, end: int, parts: list[tuple[int, int, int]],
               chars: dict[int, PageChars]) -> str:
    """Why part of a passage was not found on its pages."""
    text = chunk.text[start:end]
    if any(b == end and n + 1 not in chars for n, _, b in parts):
        return "end of the paper"
    if any(b == end for _, _, b in parts):
        return "hyphenation across pages"
    if any("\ufb00" <= ch <= "\ufb4f" for page in chars.values() for ch in page.raw) and \
            any(lig in text for lig in ("fi", "fl", "ff")):
        return "ligatures"
    return "other"


def _without_box(found: Located, chars: dict[int, PageChars]) -> int:
    """Matched characters (of the passage's text, not whitespace) that pdfium gives no box."""
    return sum(1 for n, raw in found.chars().items() for i in raw.tolist()
               if char_key(chars[n].raw[i]) and np.isnan(chars[n].boxes[i][0]))


def accuracy(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    """Every chunk of the library located on its pages."""
    total = complete = keys = found_keys = 0
    repairs: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    start = time.perf_counter()
    for paper in catalog.papers():
        path = catalog.pdfs.find(paper)
        if path is None:
            misses["no copy of the PDF"] += paper.chunks
            total += paper.chunks
            continue
        texts = {p.number: p.text for p in catalog.pages_of(paper.id)}
        with PdfPages(path) as doc:
            chars = {n: doc.chars(n) for n in range(1, doc.count + 1)}
        for chunk in catalog.chunks_of(paper.id):
            parts = passage_parts(texts, chunk.page_start, chunk.char_start, chunk.text)
            found = locate(chars, parts, chunk.text)
            total += 1
            boxless = _without_box(found, chars)
            if boxless:
                misses["character without a box"] += boxless
            complete += found.complete and not boxless
            keys += found.key_total
            found_keys += found.key_found
            repairs.update(set(found.repairs))
            for a, b in found.missed:
                cause = miss_cause(chunk, a, b, parts, chars)
                misses[cause] += 1
                if len(examples) < 20:
                    examples.append({"paper": paper.id, "chunk": chunk.ordinal,
                                     "page": chunk.page_start, "cause": cause,
                                     "text": chunk.text[a:b][:80]})
    return {"chunks": total, "fully_matched": complete,
            "share_fully_matched": round(complete / total, 4) if total else 0.0,
            "share_of_characters": round(found_keys / keys, 5) if keys else 0.0,
            "chunks_repaired_by_cause": dict(repairs.most_common()),
            "missed_runs_by_cause": dict(misses.most_common()), "miss_examples": examples,
            "seconds": round(time.perf_counter() - start, 1),
            "papers": len(catalog.papers()), "moved_word_repair": MOVED_WORD}


def tables(fig: dict[str, Any]) -> list[str]:
    lat, acc = fig["latency"], fig["accuracy"]
    rows = [[name, lat[f"{case}_ms"]["p50"], lat[f"{case}_ms"]["p95"],
             lat[f"{case}_cpu_ms"]["p50"], target]
            for name, case, target in (("cold (new viewer, empty image cache)", "cold", "≤ 300"),
                                       ("cached (same page again)", "cached", "≤ 20"))]
    first = (f"### Render + highlight, ms per page (scale {lat['scale']:g}, {lat['chunks']} "
             "cited passages)\n\n" + markdown_table(
                 ["case", "p50", "p95", "CPU p50", "target p50"], rows))
    causes = [[f"repaired: {k}", v] for k, v in acc["chunks_repaired_by_cause"].items()]
    causes += [[f"missed: {k}", v] for k, v in acc["missed_runs_by_cause"].items()]
    second = (f"### Highlight accuracy ({acc['papers']} papers, {acc['chunks']} chunks)\n\n"
              + markdown_table(["figure", "value"], [
                  ["chunks fully matched to character boxes", acc["share_fully_matched"]],
                  ["characters matched", acc["share_of_characters"]], *causes]))
    return [first, second]


def run(size: str, out_dir: Path, shared: Path, library: Path | None = None) -> dict[str, Any]:
    """Run the page benchmark at ``size``; writes ``out_dir/pages.json``; returns it."""
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        settings = library_settings(size, shared, library, Path(tmp))
        catalog = Catalog(settings)
        chunks = all_chunks(catalog)
        if not chunks:
            raise EmptyLibraryError()
        sample = random.Random(0).sample(chunks, min(SAMPLES[size], len(chunks)))
        figures = {"latency": latency(catalog, sample, Path(tmp)),
                   "accuracy": accuracy(settings, catalog)}
        catalog.close()
    run_settings = {"scale": SCALE, "samples": len(sample),
                    "library": str(library) if library else f"built from the {size} papers"}
    write_results(out_dir, NAME, size, run_settings, figures, tables(figures), info)
    return {"settings": run_settings, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--library", type=Path, default=None,
                   help="data folder of a built library (else the size's papers are ingested)")
    args = p.parse_args(argv)
    run(args.size, args.out, args.shared, args.library)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
