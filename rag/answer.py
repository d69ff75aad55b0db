"""The answer engine: question (+ conversation) -> standalone query -> hits -> prompt ->
streamed text -> Answer with citations resolved to the passages the model was shown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from core.settings import Settings
from core.types import Answer, Citation, Hit, Timings
from rag import prompts
from rag.budget import Fitted, fit_prompt
from rag.budget import Prompt as Prompt  # re-exported: tests and benchmarks build prompts
from rag.budget import build_prompt as build_prompt
from rag.citations import MARKER, attribute_uncited, expand, is_refusal, resolve, resolve_sources
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


class Answerer:
    def __init__(self, settings: Settings, retriever: Retriever, llm: LLMClient) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm

    def fit(self, question: str, hits: list[Hit], max_tokens: int | None = None) -> Fitted:
        """The prompt this answerer sends for ``question`` over ``hits``, and the request's
        max_tokens (lowered when the model's context cannot hold both); one token count."""
        return fit_prompt(self.llm, question, hits, max_tokens or self.settings.llm.max_tokens,
                          self.settings.llm.min_source_tokens,
                          mask=self.settings.llm.mask_injections)

    def stream(self, question: str, history: list[tuple[str, str]] | None = None,
               k: int | None = None, paper_ids: list[str] | None = None,
               temperature: float | None = None, max_tokens: int | None = None,
               years: tuple[int, int] | None = None) -> Iterator[Event]:
        """Yield a 'retrieval' event, then 'token' events, then 'done' with the Answer."""
        start = time.perf_counter()
        history = history or []
        use_llm = self.llm if self.settings.retrieval.rewrite else None
        query = rewrite_query(question, history, use_llm)
        rewrite_ms = (time.perf_counter() - start) * 1000
        retrieval = self.retriever.search(query, k=k, paper_ids=paper_ids, years=years)
        retrieval_ms = (time.perf_counter() - start) * 1000 - rewrite_ms
        yield Event("retrieval", retrieval=retrieval)
        timings = Timings(retrieval_ms=retrieval_ms, rewrite_ms=rewrite_ms)
        hits = retrieval.hits
        answer = Answer(question=question, answer="", abstained=False, hits=hits,
                        sources=self._resolve(hits), standalone_question=query,
                        timings=timings)
        if not retrieval.hits or retrieval.best_dense < self.settings.retrieval.min_dense_score:
            answer.answer = prompts.refusal_for(prompts.language_of(question))
            answer.abstained, answer.abstain_reason = True, "retrieval"
            yield Event("token", text=answer.answer)
            timings.total_ms = (time.perf_counter() - start) * 1000
            yield Event("done", answer=answer)
            return
        yield from self._generate(answer, hits, start, temperature, max_tokens)

    def _generate(self, answer: Answer, hits: list[Hit], start: float,
                  temperature: float | None, max_tokens: int | None) -> Iterator[Event]:
        fitted = self.fit(answer.question, hits, max_tokens)
        prompt = fitted.prompt
        answer.model = self.llm.served_model()
        answer.max_tokens = fitted.max_tokens
        pieces: list[str] = []
        stream = self.llm.stream_chat(
            prompt.messages, max_tokens=fitted.max_tokens,
            temperature=self.settings.llm.temperature if temperature is None else temperature)
        with stream:
            for piece in stream:
                if not pieces:
                    answer.timings.ttft_ms = (time.perf_counter() - start) * 1000
                pieces.append(piece)
                yield Event("token", text=piece)
        raw = "".join(pieces)
        answer.tokens = stream.completion_tokens or len(pieces)
        answer.prompt_tokens = stream.prompt_tokens or fitted.prompt_tokens
        answer.hits, answer.sources = prompt.sources, self._resolve(prompt.sources)
        if is_refusal(raw):
            answer.answer, answer.abstained, answer.abstain_reason = raw.strip(), True, "model"
        else:
            text, added = attribute_uncited(raw, prompt.sources,
                                            self.settings.llm.attribute_min_overlap)
            by_model = {n for m in MARKER.finditer(raw) for n in expand(m.group(1))}
            resolved = resolve(text, answer.sources, attributed=set(added) - by_model)
            answer.answer, answer.citations = resolved.text, resolved.citations
            answer.removed_citations, answer.uncited_sentences = resolved.removed, resolved.uncited
        answer.timings.total_ms = (time.perf_counter() - start) * 1000
        yield Event("done", answer=answer)

    def _resolve(self, hits: list[Hit]) -> list[Citation]:
        return resolve_sources(hits, self.settings.ingest.arxiv_pdf_url)

    def answer(self, question: str, **kwargs: object) -> Answer:
        for event in self.stream(question, **kwargs):  # type: ignore[arg-type]
            if event.kind == "done" and event.answer is not None:
                return event.answer
        raise RuntimeError("the answer stream ended without an answer")
