"""The answer engine: question (+ conversation) -> standalone query -> hits -> prompt ->
streamed text -> Answer with citations resolved to the passages the model was shown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from paperchat.settings import Settings
from paperchat.types import Answer, Hit, Timings
from rag import prompts
from rag.citations import MARKER, attribute_uncited, expand, is_refusal, resolve
from rag.llm import LLMClient
from rag.retrieve import Retrieval, Retriever
from rag.rewrite import rewrite_query

EventKind = Literal["retrieval", "token", "done"]


@dataclass
class Event:
    kind: EventKind
    text: str = ""
    retrieval: Retrieval | None = None
    answer: Answer | None = None


@dataclass
class Budget:
    """How many prompt tokens the sources may take on the served model."""

    max_model_len: int
    max_tokens: int
    reserve: int = 200  # system prompt, question and chat template

    @property
    def sources(self) -> int:
        return max(256, self.max_model_len - self.max_tokens - self.reserve)


def estimate_tokens(text: str) -> int:
    """Conservative estimate (about 3.2 characters per token for English BPE)."""
    return int(len(text) / 3.2) + 8


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    sources: list[Hit] = field(default_factory=list)


def build_prompt(question: str, hits: list[Hit], budget_tokens: int) -> Prompt:
    """Numbered, fenced sources in rank order until the token budget is spent; the last
    one is trimmed to fit. Returns the messages and the hits actually shown."""
    blocks: list[str] = []
    shown: list[Hit] = []
    left = budget_tokens
    for hit in hits:
        c = hit.chunk
        block = prompts.source_block(len(shown) + 1, hit.paper_title, hit.paper_year,
                                     c.page_start, c.text)
        cost = estimate_tokens(block)
        if cost > left:
            if left < 80:
                break
            keep = int(len(c.text) * (left - 40) / cost)
            block = prompts.source_block(len(shown) + 1, hit.paper_title, hit.paper_year,
                                         c.page_start, c.text[:keep] + " …")
            cost = left
        blocks.append(block)
        shown.append(hit)
        left -= cost
    return Prompt(prompts.answer_messages(question, blocks), shown)


class Answerer:
    def __init__(self, settings: Settings, retriever: Retriever, llm: LLMClient) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm
        self._budget: Budget | None = None

    def budget(self) -> Budget:
        if self._budget is None:
            self._budget = Budget(self.llm.max_model_len(), self.settings.llm.max_tokens)
        return self._budget

    def stream(self, question: str, history: list[tuple[str, str]] | None = None,
               k: int | None = None, paper_ids: list[str] | None = None,
               temperature: float | None = None,
               max_tokens: int | None = None) -> Iterator[Event]:
        """Yield a 'retrieval' event, then 'token' events, then 'done' with the Answer."""
        start = time.perf_counter()
        history = history or []
        use_llm = self.llm if self.settings.retrieval.rewrite else None
        query = rewrite_query(question, history, use_llm)
        rewrite_ms = (time.perf_counter() - start) * 1000
        retrieval = self.retriever.search(query, k=k, paper_ids=paper_ids)
        retrieval_ms = (time.perf_counter() - start) * 1000 - rewrite_ms
        yield Event("retrieval", retrieval=retrieval)
        timings = Timings(retrieval_ms=retrieval_ms, rewrite_ms=rewrite_ms)
        answer = Answer(question=question, answer="", abstained=False, hits=retrieval.hits,
                        standalone_question=query, timings=timings)
        if not retrieval.hits or retrieval.best_dense < self.settings.retrieval.min_dense_score:
            answer.answer = prompts.refusal_for(prompts.language_of(question))
            answer.abstained, answer.abstain_reason = True, "retrieval"
            yield Event("token", text=answer.answer)
            timings.total_ms = (time.perf_counter() - start) * 1000
            yield Event("done", answer=answer)
            return
        yield from self._generate(answer, retrieval.hits, start, temperature, max_tokens)

    def _generate(self, answer: Answer, hits: list[Hit], start: float,
                  temperature: float | None, max_tokens: int | None) -> Iterator[Event]:
        budget = self.budget()
        prompt = build_prompt(answer.question, hits, budget.sources)
        answer.model = self.llm.served_model()
        pieces: list[str] = []
        stream = self.llm.stream_chat(
            prompt.messages, max_tokens=max_tokens or self.settings.llm.max_tokens,
            temperature=self.settings.llm.temperature if temperature is None else temperature)
        with stream:
            for piece in stream:
                if not pieces:
                    answer.timings.ttft_ms = (time.perf_counter() - start) * 1000
                pieces.append(piece)
                yield Event("token", text=piece)
        raw = "".join(pieces)
        answer.tokens = stream.completion_tokens or len(pieces)
        answer.hits = prompt.sources
        if is_refusal(raw):
            answer.answer, answer.abstained, answer.abstain_reason = raw.strip(), True, "model"
        else:
            text, added = attribute_uncited(raw, prompt.sources,
                                            self.settings.llm.attribute_min_overlap)
            by_model = {n for m in MARKER.finditer(raw) for n in expand(m.group(1))}
            resolved = resolve(text, prompt.sources, attributed=set(added) - by_model)
            answer.answer, answer.citations = resolved.text, resolved.citations
            answer.removed_citations, answer.uncited_sentences = resolved.removed, resolved.uncited
        answer.timings.total_ms = (time.perf_counter() - start) * 1000
        yield Event("done", answer=answer)

    def answer(self, question: str, **kwargs: object) -> Answer:
        for event in self.stream(question, **kwargs):  # type: ignore[arg-type]
            if event.kind == "done" and event.answer is not None:
                return event.answer
        raise RuntimeError("the answer stream ended without an answer")
