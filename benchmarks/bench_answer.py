"""Answer benchmark: time to first token of the `paperchat ask` path against the model
server's own time to first token for the same prompt; the difference is the pipeline's
overhead (target: at most 100 ms).

For each dev question the library can answer: ``Answerer.stream`` (rewrite, retrieval,
prompt, streamed request) is timed from the call to its first token; then the very same
messages (rebuilt from the same retrieval) are sent straight to the server with
``LLMClient.stream_chat`` and timed to the first token. A warm-up round fills the server's
prefix cache for both, and the order alternates between repetitions. In ``full`` a cold
``paperchat ask`` process is also timed (start to first answer byte on stdout).

Needs a server: ``--llm-url`` (default: the environment's PAPERCHAT_TEST_LLM_URL);
without one that part is skipped with a message.

``--first-token`` (part of ``make bench``) adds the CPU's first-token figures of
``benchmarks/first_token.py``: servers of its own in bfloat16 and float32, distinct dev
questions each sent once per configuration with an empty prefix cache, the old prompt
(``benchmarks/answer_before.toml``, bf16) against the prompt the settings give now on the
dtype `paperchat serve-llm` chooses; ratios from the same run.

    python -m benchmarks.bench_answer --size small|full [--library DATA_DIR] [--llm-url URL]
        [--first-token [--serve-model FOLDER] [--before TOML]]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import first_token as ft
from benchmarks.common import (
    REPO,
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
from core.settings import Settings
from index.embedder import SentenceTransformerEmbedder
from index.library import Library
from rag.answer import Answerer
from rag.llm import LLMClient, Message
from rag.retrieve import Retriever
from serve.plan import has_cuda

NAME = "answer"
QUESTIONS = {"tiny": (2, 1), "small": (3, 2), "full": (10, 3)}  # (questions, repetitions)
PAPERS = ["1706.03762"]  # the library built when none is given (4 dev questions)
MAX_TOKENS = 8  # time to first token does not depend on it; keeps each run short
SKIP_MESSAGE = ("answer benchmark skipped: no model server. Set PAPERCHAT_TEST_LLM_URL (or pass "
                "--llm-url) to an OpenAI-compatible base URL such as http://127.0.0.1:8000/v1, "
                "e.g. the one `paperchat serve-llm` starts.")


def answerable(shared: Path, library: Library, n: int) -> list[str]:
    """Dev questions whose papers are all in the library (the first ``n``)."""
    have = {p.id for p in library.papers()}
    rows = [json.loads(line) for line in
            (shared / "eval" / "dev_questions.jsonl").read_text().splitlines() if line.strip()]
    return [str(r["question"]) for r in rows if r.get("papers") and set(r["papers"]) <= have][:n]


def ask_ttft(answerer: Answerer, question: str) -> tuple[float | None, float]:
    """(ms from the call to the first token or None when it abstained, retrieval ms)."""
    start = time.perf_counter()
    first: float | None = None
    retrieval_ms = 0.0
    for event in answerer.stream(question, max_tokens=MAX_TOKENS):
        if event.kind == "token" and first is None:
            first = (time.perf_counter() - start) * 1000
        elif event.kind == "done" and event.answer is not None:
            retrieval_ms = event.answer.timings.retrieval_ms
            if event.answer.abstain_reason == "retrieval":
                return None, retrieval_ms
    return first, retrieval_ms


def prompt_messages(answerer: Answerer, question: str) -> list[Message]:
    """The messages ``Answerer.stream`` sends for ``question`` (same retrieval, same budget)."""
    retrieval = answerer.retriever.search(question)
    return answerer.fit(question, retrieval.hits, MAX_TOKENS).prompt.messages


def server_ttft(llm: LLMClient, messages: list[Message], temperature: float) -> float:
    """ms from sending ``messages`` to the first streamed piece of text."""
    start = time.perf_counter()
    stream = llm.stream_chat(messages, max_tokens=MAX_TOKENS, temperature=temperature)
    next(stream, None)
    first = (time.perf_counter() - start) * 1000
    for _ in stream:
        pass
    return first


def measure(answerer: Answerer, questions: list[str], reps: int) -> dict[str, Any]:
    temperature = answerer.settings.llm.temperature
    prompts = {q: prompt_messages(answerer, q) for q in questions}
    kept = [q for q in questions if ask_ttft(answerer, q)[0] is not None]  # warm-up round
    for q in kept:
        server_ttft(answerer.llm, prompts[q], temperature)
    ask, direct, diff, retrieval = [], [], [], []
    for rep in range(reps):
        for q in kept:
            if rep % 2 == 0:
                a, r = ask_ttft(answerer, q)
                d = server_ttft(answerer.llm, prompts[q], temperature)
            else:
                d = server_ttft(answerer.llm, prompts[q], temperature)
                a, r = ask_ttft(answerer, q)
            assert a is not None
            ask.append(a)
            direct.append(d)
            diff.append(a - d)
            retrieval.append(r)
    return {"questions": len(kept), "abstained": len(questions) - len(kept), "reps": reps,
            "ask_ttft_ms": percentiles(ask), "server_ttft_ms": percentiles(direct),
            "overhead_ms": percentiles(diff), "retrieval_ms": percentiles(retrieval)}


def cold_cli(data_dir: Path, url: str, question: str) -> dict[str, Any]:
    """A fresh `paperchat ask` process: ms from its start to the first answer byte."""
    env = dict(os.environ, PAPERCHAT_DATA_DIR=str(data_dir), PAPERCHAT_LLM_BASE_URL=url,
               PAPERCHAT_LLM_MAX_TOKENS=str(MAX_TOKENS), TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "paperchat.cli", "ask", question]
    with Stopwatch() as whole:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=REPO)
        assert proc.stdout is not None
        proc.stdout.read(1)
        first_ms = (time.perf_counter() - whole.start) * 1000
        _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"`paperchat ask` failed ({proc.returncode}): {err.decode()[-500:]}")
    return {"first_byte_ms": round(first_ms, 1), "exit_s": round(whole.seconds, 3)}


def library_settings(library: Path | None, shared: Path, work: Path,
                     embedder: SentenceTransformerEmbedder, url: str) -> Settings:
    """Settings for the library to ask (built here from PAPERS when none is given)."""
    if library is None:
        from benchmarks.bench_ingest import whole_ingest
        from support.arxiv_stub import ArxivStub

        library = work / "library"
        with ArxivStub(shared / "corpus") as stub:
            whole_ingest(bench_settings(library, ingest=stub.ingest_settings()), embedder,
                         list(PAPERS))
    return bench_settings(library, llm={"base_url": url} if url else {})


def table(f: dict[str, Any]) -> str:
    rows = [[name, f[key]["p50"], f[key]["p95"]] for name, key in (
        ("`ask` path: call to first token", "ask_ttft_ms"),
        ("server alone, same messages", "server_ttft_ms"),
        ("overhead (paired difference)", "overhead_ms"),
        ("of which retrieval", "retrieval_ms"))]
    cold = f.get("cold_cli")
    if cold:
        rows.append(["cold `paperchat ask` process: start to first byte", cold["first_byte_ms"],
                     "–"])
    title = (f"### Time to first token, ms ({f['questions']} questions x {f['reps']}; "
             f"target overhead ≤ 100 ms)\n\n")
    return title + markdown_table(["", "p50", "p95"], rows)


def overhead(settings: Settings, lib: Library, questions: list[str], reps: int, size: str,
             url: str) -> dict[str, Any]:
    """The `ask` path's first token against the server's own, on the server at ``url``."""
    with LLMClient(settings.llm) as llm:
        answerer = Answerer(settings, Retriever(settings, lib), llm)
        figures = measure(answerer, questions, reps)
        if size == "full" and questions:
            figures["cold_cli"] = cold_cli(settings.data_dir, url, questions[0])
        figures["model"] = llm.served_model()
    return figures


def run(size: str, out_dir: Path, shared: Path, url: str, library: Path | None = None,
        query_threads: int | None = None, first_token: bool = False,
        serve_model: str | None = None, before: Path = ft.BEFORE) -> dict[str, Any]:
    """Run the answer benchmark against the server at ``url`` (none: that part is left out)
    and with ``first_token`` the first-token part; writes ``out_dir/answer.json``.
    ``query_threads`` overrides ``embedding.query_threads`` (0: torch's default)."""
    info = machine()
    embedding: dict[str, object] = {} if query_threads is None else {"query_threads": query_threads}
    n_questions, reps = QUESTIONS[size]
    figures: dict[str, Any] = {}
    tables = []
    asked: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if url:
            with LLMClient(bench_settings(Path(tmp), llm={"base_url": url}).llm) as probe:
                probe.served_model()  # fail fast, with the one-line message, if it is down
        embedder = SentenceTransformerEmbedder(
            bench_settings(Path(tmp) / "x", embedding=embedding).embedding)
        settings = library_settings(library, shared, Path(tmp), embedder, url)
        lib = Library(settings, embedder)
        questions = answerable(shared, lib, n_questions)
        if url:
            figures = overhead(settings, lib, questions, reps, size, url)
            tables.append(table(figures))
        if first_token:
            asked = answerable(shared, lib, ft.QUESTIONS[size])
            figures["first_token"] = ft.measure(
                settings, lib, asked, serve_model or ft.default_serve_model(), before)
            tables.append(ft.table(figures["first_token"]))
        lib.close()
    run_settings = {"llm_url": url, "max_tokens": MAX_TOKENS, "questions": questions,
                    "query_threads": embedder.settings.query_threads,
                    "retrieval": settings.retrieval.model_dump(),
                    "library": str(library) if library else f"built from {PAPERS}",
                    "first_token_questions": asked}
    write_results(out_dir, NAME, size, run_settings, figures, tables, info)
    return {"settings": run_settings, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--library", type=Path, default=None,
                   help="data folder of a built library (else one paper is ingested)")
    add_llm_url(p, "the benchmark is skipped")
    p.add_argument("--query-threads", type=int, default=None,
                   help="torch threads for embedding a query (default: the setting; 0: torch's)")
    p.add_argument("--first-token", action="store_true",
                   help="also time the first token on bf16 and fp32 servers started here, "
                        "the old prompt against the new (CPU only)")
    p.add_argument("--serve-model", default=None,
                   help="model folder for those servers (default: the one `make setup` "
                        "converted, per the environment's settings)")
    p.add_argument("--before", type=Path, default=ft.BEFORE,
                   help="settings of the 'before' configuration (TOML, over the defaults)")
    args = p.parse_args(argv)
    url = base_url(args.llm_url)
    first_token = args.first_token
    if first_token and has_cuda():
        print("first-token part skipped: it compares CPU dtypes (bf16/fp32), and this "
              "machine serves on CUDA.")
        first_token = False
    if not url and not first_token:
        print(SKIP_MESSAGE)
        return 0
    run(args.size, args.out, args.shared, url, args.library, args.query_threads,
        first_token, args.serve_model, args.before)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
