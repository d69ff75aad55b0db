"""The prompt's token budget on the served model: sources in rank order until the budget is
spent, and a completion (``max_tokens``) that fits the model's context with the prompt.

The sources' budget is the model's context length minus the request's ``max_tokens`` minus
the prompt without sources (system prompt, question, chat template), minus a small margin.
Passages are costed with a local estimate (:func:`estimate_tokens`, calibrated on the
served SmolLM2 tokenizer over the shared corpus); the prompt actually built is then counted
once, exactly, by the server's tokenizer (``/tokenize``, a few ms), and the completion is
lowered to what the context leaves, so vLLM never gets a request it must refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import PromptTooLongError
from core.types import Hit
from rag import prompts

# Tokens kept free beside prompt + completion (the server's count is exact; this is slack
# for a server whose chat endpoint counts a token or two more than its /tokenize).
MARGIN = 8
# A completion is never lowered below min(requested, this) to make room: the sources
# shrink instead, and a question too long for that is refused with PromptTooLongError.
MIN_COMPLETION = 64
# Counts of one answer: one normally; more only when the estimate was far too low.
MAX_COUNTS = 3

LOWER = re.compile(r"(?<![A-Za-z])[a-z]+")
CAPITAL = re.compile(r"[A-Z][A-Za-z]*")


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` for a byte-level BPE tokenizer of ~50k entries (SmolLM2's).

    Fitted against the server's counts of all 2,568 source blocks of the shared corpus:
    lower-case words 0.8, capitalised words (names split more) 1.35, ASCII letters 0.05,
    digits 1.3 (one token each, plus splits), other ASCII symbols 0.75, line breaks 1.0,
    non-ASCII UTF-8 bytes 0.6. Measured estimate/exact: median 1.02 a passage (0.78-1.23);
    0.82-1.11 over six consecutive passages of a paper (tests/test_budget.py checks it).
    The exact count of the prompt built corrects what is left (see :func:`fit_prompt`).
    """
    if not text:
        return 0
    ascii_letters = digits = symbols = non_ascii = 0
    for ch in text:
        if not ch.isascii():
            non_ascii += len(ch.encode())
        elif ch.isalpha():
            ascii_letters += 1
        elif ch.isdigit():
            digits += 1
        elif not ch.isspace():
            symbols += 1
    score = (0.8 * len(LOWER.findall(text)) + 1.35 * len(CAPITAL.findall(text))
             + 0.05 * ascii_letters + 1.3 * digits + 0.75 * symbols
             + 1.0 * text.count("\n") + 0.6 * non_ascii)
    return int(score) + 1


def estimate_chat(messages: list[dict[str, str]]) -> int:
    """Estimated prompt tokens of a chat (contents plus a few template tokens a message)."""
    return sum(estimate_tokens(m.get("content", "")) + 5 for m in messages) + 3


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    sources: list[Hit] = field(default_factory=list)


def build_prompt(question: str, hits: list[Hit], budget_tokens: int,
                 texts: list[str] | None = None, *, mask: bool = True) -> Prompt:
    """Numbered, fenced sources in rank order until the (estimated) token budget is spent;
    the last one is trimmed to fit. ``texts`` (one per hit) replaces the passages' text,
    e.g. by their best sentences (rag.evidence.passage_excerpts). Returns the messages and
    the hits actually shown. ``mask``: mask instruction-like sentences
    (:func:`rag.prompts.sanitize_source`)."""
    blocks: list[str] = []
    shown: list[Hit] = []
    left = budget_tokens
    for i, hit in enumerate(hits):
        c = hit.chunk
        text = texts[i] if texts is not None else c.text
        block = prompts.source_block(len(shown) + 1, hit.paper_title, hit.paper_year,
                                     c.page_start, text, mask)
        cost = estimate_tokens(block) + 2  # the blank line joining blocks
        if cost > left:
            if left < 80:
                break
            keep = int(len(text) * (left - 40) / cost)
            block = prompts.source_block(len(shown) + 1, hit.paper_title, hit.paper_year,
                                         c.page_start, text[:keep] + " …", mask)
            cost = left
        blocks.append(block)
        shown.append(hit)
        left -= cost
    return Prompt(prompts.answer_messages(question, blocks), shown)


def split(available: int, requested: int, min_sources: int) -> tuple[int, int]:
    """(completion, sources) tokens out of ``available`` (context minus the prompt without
    sources): the requested completion, unless that leaves the sources less than
    ``min_sources`` (at most half of what is available); then the completion is lowered."""
    keep = min(min_sources, max(0, available) // 2)
    completion = max(0, min(requested, available - keep))
    return completion, max(0, available - completion)


class TokenCounter(Protocol):
    def max_model_len(self) -> int: ...

    def count_chat_tokens(self, messages: list[dict[str, str]]) -> int | None: ...


def count_chat(llm: TokenCounter, messages: list[dict[str, str]]) -> int:
    """The server's count of a chat prompt; where it cannot count, a generous estimate (the
    calibrated one plus a quarter, so that a prompt fits)."""
    count = llm.count_chat_tokens(messages)
    return int(estimate_chat(messages) * 1.25) if count is None else count


@dataclass
class Fitted:
    """A prompt that fits: the messages, the passages shown, the request's max_tokens."""

    prompt: Prompt
    max_tokens: int
    prompt_tokens: int  # exact, from the server's tokenizer
    context: int


def floor_for(completion: int) -> int:
    """The least completion accepted before the sources are shrunk instead."""
    return min(completion, max(MIN_COMPLETION, completion // 2))


def too_long(prompt_tokens: int, context: int) -> PromptTooLongError:
    return PromptTooLongError(
        f"The question is too long for the model: its prompt takes {prompt_tokens} of the "
        f"{context} tokens of context, leaving no room for passages and an answer.",
        "Shorten the question, or lower the maximum tokens of an answer (llm.max_tokens).")


LONG_QUESTION = 512  # estimated tokens: a question this long is checked before retrieval


def long_question(question: str) -> bool:
    """Whether the question alone is long enough that it may not fit the model's context
    (only then is the served context asked for before retrieval)."""
    return estimate_tokens(question) > LONG_QUESTION


def question_room(llm: TokenCounter, question: str, requested: int,
                  min_sources: int) -> tuple[int, int]:
    """Tokens left for the answer and for the sources once the question is in the prompt;
    PromptTooLongError when the question leaves too little (checked before retrieval, so a
    pasted essay is told it is too long rather than refused or answered from nothing)."""
    context = llm.max_model_len()
    bare = prompts.answer_messages(question, [])
    completion, sources = split(context - MARGIN - estimate_chat(bare), requested, min_sources)
    if completion < min(requested, MIN_COMPLETION) or sources < 80:
        exact = count_chat(llm, bare)  # only for very long questions
        completion, sources = split(context - MARGIN - exact, requested, min_sources)
        if completion < min(requested, MIN_COMPLETION) or sources < 80:
            raise too_long(exact, context)
    return completion, sources


def fit_prompt(llm: TokenCounter, question: str, hits: list[Hit], requested: int,
               min_sources: int, texts: list[str] | None = None, *,
               mask: bool = True) -> Fitted:
    """Sources and max_tokens that fit the served model's context, counted exactly once
    (``texts``, ``mask``: see :func:`build_prompt`)."""
    context = llm.max_model_len()
    completion, sources = question_room(llm, question, requested, min_sources)
    for _ in range(MAX_COUNTS):
        prompt = build_prompt(question, hits, sources, texts, mask=mask)
        exact = count_chat(llm, prompt.messages)
        room = context - MARGIN - exact
        if room >= floor_for(completion):
            return Fitted(prompt, min(completion, room), exact, context)
        # The estimate was low: take the shortfall, in estimated tokens, from the sources.
        scale = estimate_chat(prompt.messages) / max(1, exact)
        sources -= int((completion - room) * scale * 1.1) + 16
        if sources < 80:
            break
    raise too_long(exact, context)
