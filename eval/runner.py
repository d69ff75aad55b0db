"""Answer (or only retrieve for) each question and turn it into a result record.

Retrieval metrics are computed on a ranking of ``max(k, 10)`` passages for the query the
answerer searched with (its rewrite of the question), so recall@10 is defined whatever ``-k``
is; the answer is produced from the ``k`` passages the answerer shows the model, as in chat.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from core.errors import LLMError
from core.settings import Settings
from core.types import Answer, Hit
from eval.questions import Question
from eval.score import score_record
from rag.answer import Answerer
from rag.citations import is_refusal
from rag.llm import LLMClient
from rag.retrieve import Retriever
from rag.rewrite import rewrite_query

RANKING_DEPTH = 10
NO_RETRIEVAL_SYSTEM = ("Answer the question briefly from your own knowledge, in the language "
                       "of the question. If you do not know the answer, reply exactly: "
                       "I don't know.")
DONT_KNOW = re.compile(r"\bI do(?:n'?t| not) know\b|わかりません|分かりません", re.IGNORECASE)


@dataclass
class EvalContext:
    """The heavy objects of one run, created once (see commands.build_context)."""

    settings: Settings
    mode: str  # hybrid | dense | bm25 | no-retrieval
    k: int
    retrieval_only: bool
    retriever: Retriever | None = None
    answerer: Answerer | None = None
    llm: LLMClient | None = None


def new_record(q: Question, ctx: EvalContext) -> dict[str, Any]:
    return {"id": q.id, "question": q.question, "reference": q.answer,
            "must_contain_any": list(q.must_contain_any), "papers": list(q.papers),
            "unanswerable": q.unanswerable, "mode": ctx.mode, "k": ctx.k, "status": "ok",
            "error": None, "query": None, "best_dense": None, "retrieved": None,
            "answer": None, "abstained": None, "abstain_reason": "", "citations": [],
            "shown": None, "removed_citations": [], "uncited_sentences": [],
            "timings": {"retrieval_ms": None, "ttft_ms": None, "total_ms": None},
            "tokens": None, "model": None, "answer_mode": None, "sentences": [],
            "support": None, "evidence": [], "model_answer": "", "degenerate": [],
            "metrics": {}}


def skipped_record(q: Question, ctx: EvalContext, missing: list[str]) -> dict[str, Any]:
    rec = new_record(q, ctx)
    rec.update(status="skipped", error=f"gold papers not in the library: {', '.join(missing)}",
               missing_papers=missing)
    return rec


def hit_record(h: Hit) -> dict[str, Any]:
    c = h.chunk
    return {"rank": h.rank, "paper_id": c.paper_id, "chunk_id": c.id, "page": c.page_start,
            "score": h.score, "dense_score": h.dense_score, "bm25_score": h.bm25_score,
            "text": c.text}


def retrieve_ranking(ctx: EvalContext, query: str, rec: dict[str, Any]) -> float:
    """Fill the ranking used for retrieval metrics; returns the search time in ms."""
    assert ctx.retriever is not None
    retrieval = ctx.retriever.search(query, k=max(ctx.k, RANKING_DEPTH), mode=ctx.mode)
    rec["query"] = query
    rec["best_dense"] = retrieval.best_dense
    rec["retrieved"] = [hit_record(h) for h in retrieval.hits]
    return retrieval.timings_ms["total"]


def run_retrieval_only(ctx: EvalContext, q: Question, rec: dict[str, Any]) -> None:
    """Search as the answerer would without a model (fallback rewrite of non-English
    questions); abstained is what the retrieval threshold alone would decide."""
    start = time.perf_counter()
    ms = retrieve_ranking(ctx, rewrite_query(q.question, [], None), rec)
    rec["timings"].update(retrieval_ms=ms, total_ms=(time.perf_counter() - start) * 1000)
    rec["abstained"] = (not rec["retrieved"]
                        or rec["best_dense"] < ctx.settings.retrieval.min_dense_score)
    rec["abstain_reason"] = "retrieval" if rec["abstained"] else ""


def fill_answer(rec: dict[str, Any], answer: Answer) -> None:
    rec.update(answer=answer.answer, abstained=answer.abstained,
               abstain_reason=answer.abstain_reason, model=answer.model,
               citations=[c.to_dict() for c in answer.citations],
               shown=[] if answer.abstain_reason == "retrieval"  # the model was not asked
               else [hit_record(h) for h in answer.hits],
               removed_citations=answer.removed_citations,
               uncited_sentences=answer.uncited_sentences, tokens=answer.tokens,
               answer_mode=answer.mode, support=answer.support_totals(),
               sentences=[{"text": x.text, "citations": x.citations, "support": x.support,
                           "missing": x.missing} for x in answer.sentences],
               evidence=[q.to_dict() for q in answer.evidence],
               model_answer=answer.model_answer, degenerate=answer.degenerate)
    t = answer.timings
    rec["timings"].update(retrieval_ms=t.retrieval_ms, ttft_ms=t.ttft_ms, total_ms=t.total_ms)


def run_answer(ctx: EvalContext, q: Question, rec: dict[str, Any]) -> None:
    """The full pipeline, as in chat; a model failure is recorded, not raised."""
    assert ctx.answerer is not None
    query: str | None = None
    try:
        for event in ctx.answerer.stream(q.question, k=ctx.k):
            if event.kind == "retrieval" and event.retrieval is not None:
                query = event.retrieval.query
            elif event.kind == "done" and event.answer is not None:
                fill_answer(rec, event.answer)
    except LLMError as err:
        rec.update(status="error", error=str(err))
    if query is not None:  # searched again after the stream, outside its timings
        retrieve_ranking(ctx, query, rec)


def run_no_retrieval(ctx: EvalContext, q: Question, rec: dict[str, Any]) -> None:
    """The model alone, with no sources: what retrieval buys is the difference."""
    assert ctx.llm is not None
    messages = [{"role": "system", "content": NO_RETRIEVAL_SYSTEM},
                {"role": "user", "content": q.question}]
    start = time.perf_counter()
    pieces: list[str] = []
    ttft = None
    try:
        stream = ctx.llm.stream_chat(messages, max_tokens=ctx.settings.llm.max_tokens,
                                     temperature=ctx.settings.llm.temperature)
        for piece in stream:
            ttft = ttft if ttft is not None else (time.perf_counter() - start) * 1000
            pieces.append(piece)
    except LLMError as err:
        rec.update(status="error", error=str(err))
        return
    text = "".join(pieces).strip()
    abstained = is_refusal(text) or bool(DONT_KNOW.search(text))
    rec.update(answer=text, abstained=abstained, abstain_reason="model" if abstained else "",
               model=ctx.llm.served_model(), tokens=stream.completion_tokens or len(pieces))
    rec["timings"].update(ttft_ms=ttft, total_ms=(time.perf_counter() - start) * 1000)


def evaluate_question(ctx: EvalContext, q: Question) -> dict[str, Any]:
    """One result record with its per-question metrics."""
    rec = new_record(q, ctx)
    if ctx.retrieval_only:
        run_retrieval_only(ctx, q, rec)
    elif ctx.mode == "no-retrieval":
        run_no_retrieval(ctx, q, rec)
    else:
        run_answer(ctx, q, rec)
    rec["metrics"] = score_record(rec)
    return rec
