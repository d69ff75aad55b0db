"""Embedding backends on the CPU: torch (sentence-transformers) against onnxruntime fp32 and
int8 (``index/onnx_embedder.py``), on the real chunks of corpus papers.

Per-passage rates are taken in alternating rounds (each round runs every backend on the
same passages, in a rotated order) so a change in the machine's load hits them all alike;
the figure to read is each backend's rate **divided by torch's in the same round** (median
over rounds), and the CPU seconds per 1,000 passages. Also: one-time costs (model load,
ONNX export, int8 quantisation), quality against torch (cosine per passage, top-10
neighbours of dev questions) and single-query latency at one thread.

    python -m benchmarks.bench_onnx --size tiny|small|full
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_query import dev_questions
from benchmarks.common import (
    Stopwatch,
    bench_settings,
    machine,
    markdown_table,
    parser,
    percentiles,
    rate,
    run_main,
    write_results,
)
from index.embedder import Embedder, SentenceTransformerEmbedder
from index.library import embed_text
from index.onnx_embedder import OnnxEmbedder
from ingest.extract import extract_pages
from ingest.pipeline import make_chunker

NAME = "onnx"
# papers, rounds, dev questions (quality and latency) per size
SIZES: dict[str, tuple[list[str], int, int]] = {
    "tiny": (["1910.13461"], 1, 3),
    "small": (["1910.13461", "1706.03762"], 3, 20),
    "full": (["1910.13461", "1706.03762", "1810.04805", "1907.11692", "2106.09685"], 3, 50),
}
BACKENDS = ("torch", "onnx", "onnx-int8")


def passages(shared: Path, papers: list[str]) -> list[str]:
    """The chunks of ``papers`` as the embedder sees them (title and section in front)."""
    chunker = make_chunker(bench_settings(Path("unused")))
    out: list[str] = []
    for pid in papers:
        pdf = shared / "corpus" / "pdfs" / f"{pid}.pdf"
        if not pdf.is_file():
            continue
        for c in chunker.chunk(pid, extract_pages(pdf, pid)):
            out.append(embed_text(pid, c.section, c.text))
    return out


def load(backend: str, onnx_dir: Path) -> tuple[Embedder, float]:
    settings = bench_settings(Path("unused")).embedding
    with Stopwatch() as sw:
        e: Embedder = (SentenceTransformerEmbedder(settings) if backend == "torch" else
                       OnnxEmbedder(settings, onnx_dir, int8=backend == "onnx-int8"))
    return e, round(sw.seconds, 2)


def timed_embed(e: Embedder, texts: list[str]) -> tuple[np.ndarray, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    vectors = e.embed(texts)
    return vectors, time.perf_counter() - wall, time.process_time() - cpu


def rounds(embedders: dict[str, Embedder], texts: list[str], n: int) -> dict[str, Any]:
    per: dict[str, list[dict[str, float]]] = {b: [] for b in embedders}
    order = list(embedders)
    for r in range(n):
        for b in order[r % len(order):] + order[:r % len(order)]:
            _, wall, cpu = timed_embed(embedders[b], texts)
            per[b].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                           "passages_per_s": rate(len(texts), wall)})
    out: dict[str, Any] = {}
    for b, runs in per.items():
        ratios = [run["passages_per_s"] / base["passages_per_s"]
                  for run, base in zip(runs, per["torch"], strict=True)]
        out[b] = {"rounds": runs, "speed_vs_torch": [round(x, 3) for x in ratios],
                  "speed_vs_torch_median": round(statistics.median(ratios), 3),
                  "cpu_s_per_1000": round(1000 * statistics.median(
                      [x["cpu_s"] for x in runs]) / len(texts), 2)}
    return out


def quality(vectors: dict[str, np.ndarray], queries: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    base, qbase = vectors["torch"], queries["torch"]
    k = min(10, len(base))
    top = np.argsort(-(qbase @ base.T), axis=1)[:, :k]
    for b, v in vectors.items():
        cos = (v * base).sum(1)
        mine = np.argsort(-(queries[b] @ v.T), axis=1)[:, :k]
        overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(mine, top, strict=True)])
        out[b] = {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5),
                  f"top{k}_overlap": round(float(overlap), 3)}
    return out


def latency(e: Embedder, questions: list[str]) -> dict[str, float]:
    e.embed(questions[:1], "query")  # warm (the one-thread query session is made lazily)
    times = []
    for q in questions:
        with Stopwatch() as sw:
            e.embed([q], "query")
        times.append(sw.seconds * 1000)
    return percentiles(times)


def tables(f: dict[str, Any], n: int) -> list[str]:
    rows = [(b, f["load_s"][b], f["rounds"][b]["speed_vs_torch_median"],
             ", ".join(f"{x:.2f}" for x in f["rounds"][b]["speed_vs_torch"]),
             f["rounds"][b]["cpu_s_per_1000"], f["quality"][b]["cos_mean"],
             f["quality"][b]["cos_min"], next(v for k, v in f["quality"][b].items()
                                              if k.startswith("top")),
             f["query_latency_ms"][b]["p50"]) for b in BACKENDS]
    head = ["backend", "load s (export incl.)", "speed vs torch (median)", "per round",
            "CPU s / 1000 passages", "cos mean", "cos min", "top-10 overlap",
            "query p50 ms (1 thread)"]
    return [f"### Embedding backends on {n} corpus passages (batch "
            f"{f['batch_size']}, rates as ratios to torch in the same round)\n\n"
            + markdown_table(head, rows)]


def run(size: str, out_dir: Path, shared: Path) -> dict[str, Any]:
    """Run the benchmark at ``size``; writes ``out_dir/onnx.json``; returns the figures."""
    info = machine()
    papers, n_rounds, n_questions = SIZES[size]
    texts = passages(shared, papers)
    questions = dev_questions(shared, n_questions)
    with tempfile.TemporaryDirectory() as tmp:
        embedders, load_s = {}, {}
        for b in BACKENDS:  # the ONNX loads include the one-time export / quantisation
            embedders[b], load_s[b] = load(b, Path(tmp))
        reload_s = {b: load(b, Path(tmp))[1] for b in BACKENDS if b != "torch"}
        vectors = {b: e.embed(texts) for b, e in embedders.items()}  # also a warm-up
        queries = {b: e.embed(questions, "query") for b, e in embedders.items()}
        figures = {"passages": len(texts), "papers": papers, "load_s": load_s,
                   "reload_s_after_export": reload_s,
                   "batch_size": bench_settings(Path("unused")).embedding.batch_size,
                   "rounds": rounds(embedders, texts, n_rounds),
                   "quality": quality(vectors, queries),
                   "query_latency_ms": {b: latency(e, questions)
                                        for b, e in embedders.items()}}
    run_settings = {"embedding": bench_settings(Path("unused")).embedding.model_dump(
        mode="json"), "rounds": n_rounds, "questions": len(questions)}
    write_results(out_dir, NAME, size, run_settings, figures, tables(figures, len(texts)),
                  info)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0] if __doc__ else NAME)
    args = p.parse_args(argv)
    run(args.size, args.out, args.shared)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
