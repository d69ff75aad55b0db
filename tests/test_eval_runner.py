"""Unit tests of the runner's per-question functions (small fakes stand in for the model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.errors import LLMUnavailableError
from core.types import Chunk, Hit
from eval.questions import Question
from eval.runner import EvalContext, evaluate_question
from rag.answer import Event
from rag.retrieve import Retrieval
from tests.helpers import make_settings

QUESTION = Question(id="q1", question="What label smoothing value was used?", answer="0.1",
                    must_contain_any=("0.1",), papers=("P",))


def hit(rank: int, paper: str, text: str) -> Hit:
    chunk = Chunk(paper_id=paper, ordinal=rank, text=text, page_start=1, page_end=1,
                  char_start=0, char_end=len(text), id=100 + rank)
    return Hit(chunk=chunk, paper_title=paper, paper_year=2020, score=1 / rank, rank=rank)


class FakeRetriever:
    def search(self, query: str, k: int | None = None, **_: Any) -> Retrieval:
        hits = [hit(1, "X", "nothing"), hit(2, "P", "we used label smoothing of 0.1")]
        return Retrieval(query=query, hits=hits[: k or 2], best_dense=0.6,
                         timings_ms={"total": 3.0})


class FailingAnswerer:
    """Retrieves, then the model server drops the connection mid-answer."""

    def stream(self, question: str, **_: Any) -> Iterator[Event]:
        yield Event("retrieval", retrieval=FakeRetriever().search("rewritten query", k=2))
        yield Event("token", text="Label")
        raise LLMUnavailableError("http://127.0.0.1:9/v1", "connection reset")


def context(tmp_path: Any, **kw: Any) -> EvalContext:
    settings = make_settings(tmp_path / "data")
    return EvalContext(settings=settings, mode="hybrid", k=2, retrieval_only=False,
                       retriever=FakeRetriever(), **kw)  # type: ignore[arg-type]


def test_a_model_failure_is_recorded_with_the_retrieval_scored(tmp_path: Any) -> None:
    rec = evaluate_question(context(tmp_path, answerer=FailingAnswerer()), QUESTION)
    assert rec.status == "error" and rec.error and "not reachable" in rec.error
    assert rec.answer is None and rec.metrics.answers == {}
    assert rec.query == "rewritten query"  # the answerer's query, searched again
    assert rec.metrics.retrieval["recall@1"] == 0.0
    assert rec.metrics.retrieval["mrr@10"] == 0.5
    assert rec.metrics.retrieval["evidence@5"] == 1.0


def test_retrieval_only_abstains_below_the_dense_threshold(tmp_path: Any) -> None:
    ctx = context(tmp_path)
    ctx.retrieval_only = True
    assert evaluate_question(ctx, QUESTION).abstained is False
    ctx.settings.retrieval.min_dense_score = 0.7  # best dense of the fake is 0.6
    rec = evaluate_question(ctx, QUESTION)
    assert rec.abstained is True and rec.abstain_reason == "retrieval"
    assert rec.answer is None and rec.timings.retrieval_ms == 3.0
