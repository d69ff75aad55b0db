"""Rewrite benchmark: retrieval with and without the question rewrite, on questions the
rewrite exists for: Japanese questions over English papers and follow-ups ("and its
decoder?") that only make sense with the conversation (``rewrite_questions.jsonl`` beside
this file, written for this benchmark over the shared corpus, apart from the eval sets). A
follow-up comes after two turns (question and answer): the paper is named in the first,
never in the second question nor in the follow-up, so joining the previous question is no
shortcut to the paper's name; resolving "it" needs the conversation.

Three ways to build the retrieval query:

* ``none``: the question as typed (no rewrite at all);
* ``terms``: the rewrite without a model (``retrieval.rewrite`` off, or the model's rewrite
  rejected): the previous question joined to a follow-up, the Latin-script words plus the
  glossary's English for Japanese ML terms;
* ``model``: what `ask` and the chat do with ``retrieval.rewrite`` on: the served model
  rewrites, its output is checked, the plain terms are appended (needs a model server).

For each: the share of questions whose gold paper is among the top 5 and 10 hits, the
rewrite's own time, and the rewrite plus the retrieval: what `ask` adds before the model
starts answering a follow-up or non-English question (with ``retrieval.rewrite`` on, the
``model`` row; off, ``terms``; an English first question is not rewritten, and its overhead
is bench_answer's). Needs the library of the shared corpus (``--library``, as
``scripts/run_benchmarks.sh`` passes it) or builds one.

    python -m benchmarks.bench_rewrite --size small|full [--library DATA_DIR] [--llm-url URL]
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Stopwatch,
    add_llm_url,
    base_url,
    bench_settings,
    machine,
    markdown_table,
    parser,
    percentiles,
    run_main,
    write_results,
)
from index.embedder import SentenceTransformerEmbedder
from index.library import Library
from rag.llm import LLMClient
from rag.retrieve import Retriever
from rag.rewrite import rewrite_query

NAME = "rewrite"
QUESTIONS = Path(__file__).parent / "rewrite_questions.jsonl"
PER_KIND = {"tiny": 2, "small": 4, "full": 100}  # questions of each kind (ja, follow-up)
MODES = ("none", "terms", "model")
Rewriter = Callable[[str, list[tuple[str, str]]], str]


def load_questions(size: str, have: set[str]) -> list[dict[str, Any]]:
    """The questions whose papers are in the library, PER_KIND[size] of each kind."""
    rows = [json.loads(x) for x in QUESTIONS.read_text(encoding="utf-8").splitlines() if x]
    rows = [r for r in rows if set(r["papers"]) <= have]
    ja = [r for r in rows if not r.get("history")][:PER_KIND[size]]
    follow = [r for r in rows if r.get("history")][:PER_KIND[size]]
    return ja + follow


def rewriters(llm: LLMClient | None) -> dict[str, Rewriter]:
    out: dict[str, Rewriter] = {"none": lambda q, h: q,
                                "terms": lambda q, h: rewrite_query(q, h, None)}
    if llm is not None:
        out["model"] = lambda q, h: rewrite_query(q, h, llm)
    return out


def measure(retriever: Retriever, questions: list[dict[str, Any]],
            rewrite: Rewriter) -> dict[str, Any]:
    """Hit rates at 5 and 10 per kind of question, and the rewrite's time."""
    found: dict[str, dict[int, list[bool]]] = {"japanese": {5: [], 10: []},
                                               "follow-up": {5: [], 10: []}}
    times: list[float] = []
    ready: list[float] = []
    examples = []
    for q in questions:
        history = [(h, "") if isinstance(h, str) else (h[0], h[1])
                   for h in q.get("history", [])]
        with Stopwatch() as sw:
            query = rewrite(q["question"], history)
        with Stopwatch() as search:
            hits = retriever.search(query, k=10).hits
        times.append(sw.seconds * 1000)
        ready.append((sw.seconds + search.seconds) * 1000)
        kind = "follow-up" if history else "japanese"
        for k in (5, 10):
            found[kind][k].append(bool({h.chunk.paper_id for h in hits[:k]} & set(q["papers"])))
        examples.append({"id": q["id"], "query": query})
    figures: dict[str, Any] = {kind: {f"hit@{k}": round(sum(v) / len(v), 3) if v else None
                                      for k, v in by_k.items()} | {"n": len(by_k[5])}
                               for kind, by_k in found.items()}
    figures["rewrite_ms"] = percentiles(times)
    figures["rewrite_and_retrieval_ms"] = percentiles(ready)
    figures["queries"] = examples
    return figures


def table(f: dict[str, Any]) -> str:
    rows = []
    for mode in MODES:
        if mode not in f:
            rows.append([mode, "–", "–", "–", "–", "no model server", "–"])
            continue
        m = f[mode]
        rows.append([mode, m["japanese"]["hit@5"], m["japanese"]["hit@10"],
                     m["follow-up"]["hit@5"], m["follow-up"]["hit@10"], m["rewrite_ms"]["p50"],
                     m["rewrite_and_retrieval_ms"]["p50"]])
    n = f["terms"]["japanese"]["n"], f["terms"]["follow-up"]["n"]
    title = (f"### Retrieval with and without the rewrite ({n[0]} Japanese questions, {n[1]} "
             "follow-ups; share whose gold paper is in the top k)\n\n")
    return title + markdown_table(["query", "ja hit@5", "ja hit@10", "follow-up hit@5",
                                   "follow-up hit@10", "rewrite p50 ms",
                                   "rewrite + retrieval p50 ms (ask's overhead)"], rows)


def run(size: str, out_dir: Path, shared: Path, library: Path | None, url: str) -> dict[str, Any]:
    """Run the rewrite benchmark; writes ``out_dir/rewrite.json``; returns it."""
    from benchmarks.bench_query import corpus_library

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        embedder = SentenceTransformerEmbedder(bench_settings(Path(tmp) / "x").embedding)
        settings = corpus_library("full", shared, library, Path(tmp), embedder)
        settings = bench_settings(settings.data_dir, llm={"base_url": url} if url else {})
        lib = Library(settings, embedder)
        retriever = Retriever(settings, lib)
        questions = load_questions(size, {p.id for p in lib.papers()})
        llm = LLMClient(settings.llm) if url else None
        figures: dict[str, Any] = {mode: measure(retriever, questions, rewrite)
                                   for mode, rewrite in rewriters(llm).items()}
        if llm is not None:
            figures["model_name"] = llm.served_model()
            llm.close()
        lib.close()
    run_settings = {"llm_url": url or None, "questions": [q["id"] for q in questions],
                    "retrieval": settings.retrieval.model_dump()}
    write_results(out_dir, NAME, size, run_settings, figures, [table(figures)], info)
    return {"settings": run_settings, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--library", type=Path, default=None,
                   help="data folder of a built corpus library (else the corpus is ingested)")
    add_llm_url(p, "the 'model' rows are left out")
    args = p.parse_args(argv)
    run(args.size, args.out, args.shared, args.library, base_url(args.llm_url))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
