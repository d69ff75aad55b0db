"""The answer engine: question (+ conversation) -> standalone query -> hits -> evidence
(the passages' best sentences, scored without a model) -> refusal check -> prompt ->
streamed text (stopped when it loops) -> echo stripped -> citations resolved to the passages
the model was shown -> every sentence checked against its cited passages -> Answer.

Answer modes (llm.answer_mode): ``generate`` keeps the model's checked answer; ``extract``
quotes the evidence without calling the model; ``auto`` generates and falls back to the
quotes when the model's text degenerates (rag.extract)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from core.settings import Settings
from core.types import Answer, Citation, Hit, Quote, Timings
from rag import prompts
from rag.budget import Fitted, fit_prompt, long_question, question_room
from rag.budget import Prompt as Prompt  # re-exported: tests and benchmarks build prompts
from rag.budget import build_prompt as build_prompt
from rag.citations import MARKER, attribute_uncited, expand, is_refusal, resolve, resolve_sources
from rag.evidence import (
    Signal,
    passage_excerpts,
    pick_evidence,
    renumber,
    score_sentences,
    signal,
)
from rag.extract import degeneration, needs_quotes, use_quotes
from rag.guards import Echo, LoopGuard, strip_echo
from rag.llm import LLMClient
from rag.retrieve import Retrieval, Retriever
from rag.rewrite import rewrite_query
from rag.support import attribute_by_support, check_answer

EventKind = Literal["retrieval", "token", "done"]
AnswerMode = Literal["auto", "generate", "extract"]


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
        self._fronts: dict[str, str] = {}
        self._fronts_at: tuple[int, int] | None = None

    # -- evidence and refusal -------------------------------------------------------------
    def front_matter(self, paper_ids: list[str]) -> str:
        """Title, authors, aliases and first page of each paper (where a question's names
        for a paper live), cached until the library changes."""
        library = self.retriever.library
        counters = library.counters()
        if counters != self._fronts_at:
            self._fronts, self._fronts_at = {}, counters
        for pid in paper_ids:
            if pid not in self._fronts:
                paper = library.paper(pid)
                pages = library.pages_of(pid)[:1]
                meta = [paper.title, *paper.authors, *paper.aliases] if paper else []
                self._fronts[pid] = " ".join([*meta, *(p.text for p in pages)])
        return " ".join(self._fronts[pid] for pid in paper_ids)

    def assess(self, query: str, hits: list[Hit], best_dense: float) -> tuple[list[Quote],
                                                                               Signal]:
        """The scored sentences of ``hits`` and the refusal signal for ``query``."""
        scored = score_sentences(query, hits, self.retriever.library.embedder,
                                 self.settings.embedding.query_threads) if hits else []
        papers = list(dict.fromkeys(h.chunk.paper_id for h in hits))
        return scored, signal(query, hits, scored, best_dense, self.front_matter(papers))

    def refuses(self, s: Signal) -> bool:
        """Whether the library cannot answer: no passage close enough (dense score), no
        sentence that addresses the question, or names the passages never mention."""
        r = self.settings.retrieval
        return (s.best_dense < r.min_dense_score or s.best_sentence < r.min_evidence_score
                or s.name_coverage < r.min_name_coverage)

    # -- the prompt -----------------------------------------------------------------------
    def tight(self) -> bool:
        """Whether the prompt shows the passages' best sentences (llm.prompt_passages)."""
        llm = self.settings.llm
        if llm.prompt_passages == "auto":
            return self.llm.max_model_len() <= llm.small_context
        return llm.prompt_passages == "sentences"

    def fit(self, question: str, hits: list[Hit], max_tokens: int | None = None,
            scored: list[Quote] | None = None) -> Fitted:
        """The prompt this answerer sends for ``question`` over ``hits``, and the request's
        max_tokens (lowered when the model's context cannot hold both); one token count.
        With the tight prompt (and ``scored`` sentences of ``hits``), the first
        llm.tight_passages passages, each cut to its llm.tight_sentences best sentences
        (the numbering stays the retrieval's: passage n is hits[n - 1])."""
        llm = self.settings.llm
        texts = None
        if scored and self.tight():
            hits = hits[:llm.tight_passages]
            texts = passage_excerpts(hits, [q for q in scored if q.n <= len(hits)],
                                     llm.tight_sentences)
        return fit_prompt(self.llm, question, hits, max_tokens or llm.max_tokens,
                          llm.min_source_tokens, texts, mask=llm.mask_injections)

    # -- answering ------------------------------------------------------------------------
    def stream(self, question: str, history: list[tuple[str, str]] | None = None,
               k: int | None = None, paper_ids: list[str] | None = None,
               temperature: float | None = None, max_tokens: int | None = None,
               years: tuple[int, int] | None = None,
               mode: AnswerMode | None = None) -> Iterator[Event]:
        """Yield a 'retrieval' event, then 'token' events, then 'done' with the Answer."""
        mode = mode or self.settings.llm.answer_mode
        start = time.perf_counter()
        use_llm = self.llm if self.settings.retrieval.rewrite and mode != "extract" else None
        query = rewrite_query(question, history or [], use_llm)
        rewrite_ms = (time.perf_counter() - start) * 1000
        retrieval = self.retriever.search(query, k=k, paper_ids=paper_ids, years=years)
        yield Event("retrieval", retrieval=retrieval)
        if mode != "extract" and long_question(question):  # too long: said so, not refused
            llm = self.settings.llm
            question_room(self.llm, question, max_tokens or llm.max_tokens, llm.min_source_tokens)
        hits = retrieval.hits
        scored, sig = self.assess(query, hits, retrieval.best_dense)
        timings = Timings(retrieval_ms=(time.perf_counter() - start) * 1000 - rewrite_ms,
                          rewrite_ms=rewrite_ms)
        answer = Answer(question=question, answer="", abstained=False, hits=hits,
                        sources=self._resolve(hits), standalone_question=query,
                        timings=timings, mode="extract" if mode == "extract" else "generate",
                        signal=sig.to_dict())
        if not hits or self.refuses(sig):
            answer.answer = prompts.refusal_for(prompts.language_of(question))
            answer.abstained, answer.abstain_reason = True, "retrieval"
            yield Event("token", text=answer.answer)
        elif mode == "extract":
            use_quotes(answer, pick_evidence(scored, self.settings.llm.evidence_quotes))
            yield Event("token", text=answer.answer)
        else:
            yield from self._generate(answer, scored, start, temperature, max_tokens, mode)
        answer.timings.total_ms = (time.perf_counter() - start) * 1000
        yield Event("done", answer=answer)

    def _generate(self, answer: Answer, scored: list[Quote], start: float,
                  temperature: float | None, max_tokens: int | None,
                  mode: AnswerMode) -> Iterator[Event]:
        hits = answer.hits
        fitted = self.fit(answer.question, hits, max_tokens, scored)
        prompt = fitted.prompt
        answer.model = self.llm.served_model()
        answer.max_tokens = fitted.max_tokens
        guard = LoopGuard()
        pieces: list[str] = []
        stream = self.llm.stream_chat(
            prompt.messages, max_tokens=fitted.max_tokens,
            temperature=self.settings.llm.temperature if temperature is None else temperature)
        with stream:  # leaving the block closes the HTTP stream: the server stops
            for piece in stream:
                if not pieces:
                    answer.timings.ttft_ms = (time.perf_counter() - start) * 1000
                pieces.append(piece)
                if guard.feed(piece):
                    break
                yield Event("token", text=piece)
        raw = "".join(pieces)
        answer.raw_answer = raw
        answer.tokens = stream.completion_tokens or len(pieces)
        answer.prompt_tokens = stream.prompt_tokens or fitted.prompt_tokens
        answer.hits, answer.sources = prompt.sources, self._resolve(prompt.sources)
        evidence = pick_evidence(renumber(scored, hits, prompt.sources),
                                 self.settings.llm.evidence_quotes)
        text = raw[:guard.cut] if guard.cut is not None else raw
        self._finish(answer, text, prompt, evidence, looped=guard.cut is not None, mode=mode)

    def _finish(self, answer: Answer, text: str, prompt: Prompt, evidence: list[Quote],
                looped: bool, mode: AnswerMode) -> None:
        """Strip echo, attach and resolve citations, check every sentence; in ``auto``,
        quote the evidence instead of a degenerate answer."""
        answer.evidence = evidence
        if is_refusal(text):
            answer.answer, answer.abstained, answer.abstain_reason = text.strip(), True, "model"
            return
        passages = [h.chunk.text for h in prompt.sources]
        echo = Echo.of(prompt.messages, answer.question, passages)
        clean, reasons = strip_echo(text, echo)
        text, added = attribute_uncited(clean, prompt.sources,
                                        self.settings.llm.attribute_min_overlap, echo)
        if self.settings.llm.attribute_min_overlap <= 1.0:
            text, more = attribute_by_support(text, answer.sources, answer.question)
            added += more
        by_model = {n for m in MARKER.finditer(clean) for n in expand(m.group(1))}
        resolved = resolve(text, answer.sources, attributed=set(added) - by_model)
        answer.answer, answer.citations = resolved.text, resolved.citations
        answer.removed_citations, answer.uncited_sentences = resolved.removed, resolved.uncited
        answer.sentences = check_answer(resolved.text, answer.sources, answer.question)
        answer.degenerate = degeneration(answer, reasons, looped)
        if mode == "auto" and needs_quotes(answer.degenerate) and evidence:
            answer.model_answer = answer.answer
            use_quotes(answer, evidence)

    def _resolve(self, hits: list[Hit]) -> list[Citation]:
        return resolve_sources(hits, self.settings.ingest.arxiv_pdf_url)

    def answer(self, question: str, **kwargs: object) -> Answer:
        for event in self.stream(question, **kwargs):  # type: ignore[arg-type]
            if event.kind == "done" and event.answer is not None:
                return event.answer
        raise RuntimeError("the answer stream ended without an answer")
