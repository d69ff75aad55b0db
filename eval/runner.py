"""Answer (or only retrieve for) each question and turn it into a result record.

Retrieval metrics are computed on a ranking of ``max(k, 10)`` passages for the query the
answerer searched with (its rewrite of the question), so recall@10 is defined whatever ``-k``
is; the answer is produced from the ``k`` passages the answerer shows the model, as in chat.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from core.errors import LLMError
from core.settings import Settings
from core.types import Answer, Hit
from eval.questions import Question
from eval.record import CheckedSentence, CitedPassage, EvalRecord, Passage, RecordTimings
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


def new_record(q: Question, ctx: EvalContext) -> EvalRecord:
    return EvalRecord(id=q.id, question=q.question, reference=q.answer,
                      must_contain_any=list(q.must_contain_any), papers=list(q.papers),
                      unanswerable=q.unanswerable, mode=ctx.mode, k=ctx.k)


def skipped_record(q: Question, ctx: EvalContext, missing: list[str]) -> EvalRecord:
    rec = new_record(q, ctx)
    rec.status = "skipped"
    rec.error = f"gold papers not in the library: {', '.join(missing)}"
    rec.missing_papers = missing
    return rec


def passage(h: Hit) -> Passage:
    c = h.chunk
    return Passage(rank=h.rank, paper_id=c.paper_id, chunk_id=c.id, page=c.page_start,
                   score=h.score, dense_score=h.dense_score, bm25_score=h.bm25_score,
                   text=c.text)


def retrieve_ranking(ctx: EvalContext, query: str, rec: EvalRecord) -> float:
    """Fill the ranking used for retrieval metrics; returns the search time in ms."""
    assert ctx.retriever is not None
    retrieval = ctx.retriever.search(query, k=max(ctx.k, RANKING_DEPTH), mode=ctx.mode)
    rec.query = query
    rec.best_dense = retrieval.best_dense
    rec.retrieved = [passage(h) for h in retrieval.hits]
    return retrieval.timings_ms["total"]


def run_retrieval_only(ctx: EvalContext, q: Question, rec: EvalRecord) -> None:
    """Search as the answerer would without a model (fallback rewrite of non-English
    questions); abstained is what the retrieval threshold alone would decide."""
    start = time.perf_counter()
    ms = retrieve_ranking(ctx, rewrite_query(q.question, [], None), rec)
    rec.timings.retrieval_ms, rec.timings.total_ms = ms, (time.perf_counter() - start) * 1000
    rec.abstained = (not rec.retrieved or rec.best_dense is None
                     or rec.best_dense < ctx.settings.retrieval.min_dense_score)
    rec.abstain_reason = "retrieval" if rec.abstained else ""


def fill_answer(rec: EvalRecord, answer: Answer) -> None:
    """Copy what the answerer made into the record (``raw_answer``: the model's own text,
    before invalid markers were removed and citations attached)."""
    rec.answer, rec.raw_answer = answer.answer, answer.raw_answer
    rec.abstained, rec.abstain_reason = answer.abstained, answer.abstain_reason
    rec.model = answer.model
    rec.citations = [CitedPassage.model_validate(c.to_dict()) for c in answer.citations]
    rec.shown = ([] if answer.abstain_reason == "retrieval"  # the model was not asked
                 else [passage(h) for h in answer.hits])
    rec.removed_citations = list(answer.removed_citations)
    rec.uncited_sentences = list(answer.uncited_sentences)
    rec.tokens, rec.answer_mode, rec.support = answer.tokens, answer.mode, answer.support_totals()
    rec.sentences = [CheckedSentence(text=x.text, citations=x.citations, support=x.support,
                                     missing=x.missing) for x in answer.sentences]
    rec.evidence = [q.to_dict() for q in answer.evidence]
    rec.model_answer, rec.degenerate = answer.model_answer, list(answer.degenerate)
    t = answer.timings
    rec.timings = RecordTimings(retrieval_ms=t.retrieval_ms, ttft_ms=t.ttft_ms,
                                total_ms=t.total_ms)


def run_answer(ctx: EvalContext, q: Question, rec: EvalRecord) -> None:
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
        rec.status, rec.error = "error", str(err)
    if query is not None:  # searched again after the stream, outside its timings
        retrieve_ranking(ctx, query, rec)


def run_no_retrieval(ctx: EvalContext, q: Question, rec: EvalRecord) -> None:
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
        rec.status, rec.error = "error", str(err)
        return
    rec.raw_answer = "".join(pieces)
    text = rec.raw_answer.strip()
    rec.answer, rec.abstained = text, is_refusal(text) or bool(DONT_KNOW.search(text))
    rec.abstain_reason = "model" if rec.abstained else ""
    rec.model, rec.tokens = ctx.llm.served_model(), stream.completion_tokens or len(pieces)
    rec.timings.ttft_ms, rec.timings.total_ms = ttft, (time.perf_counter() - start) * 1000


def evaluate_question(ctx: EvalContext, q: Question) -> EvalRecord:
    """One result record with its per-question metrics."""
    rec = new_record(q, ctx)
    if ctx.retrieval_only:
        run_retrieval_only(ctx, q, rec)
    elif ctx.mode == "no-retrieval":
        run_no_retrieval(ctx, q, rec)
    else:
        run_answer(ctx, q, rec)
    rec.metrics = score_record(rec)
    return rec
