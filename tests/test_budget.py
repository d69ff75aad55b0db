"""The prompt's token budget: the passage estimate checked against the real server's
tokenizer over the whole corpus, and prompts that always fit the served model's context
(a long question, max_tokens up to the context, a question too long to answer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from core.errors import PromptTooLongError
from core.settings import LLMSettings, Settings
from core.types import Chunk, Hit
from rag import prompts
from rag.budget import MARGIN, build_prompt, estimate_tokens, fit_prompt, split
from rag.llm import LLMClient
from rag.retrieve import Retriever

LONG_QUESTION = ("I am writing a detailed survey of sequence transduction models and need to "
                 "get the numbers exactly right, so please read the passages carefully. " * 8
                 + "What does source [1] say about the BLEU score of the Transformer on the "
                 "WMT 2014 English-to-German translation task?")


def hit(n: int, text: str) -> Hit:
    chunk = Chunk(paper_id="p", ordinal=n, text=text, page_start=n, page_end=n,
                  char_start=0, char_end=len(text), id=n)
    return Hit(chunk=chunk, paper_title="A Paper", paper_year=2020, score=1.0 / n)


# -- units -------------------------------------------------------------------------------

def test_split_keeps_the_request_until_the_sources_would_starve() -> None:
    assert split(1800, 384, 512) == (384, 1416)  # fits: as asked
    assert split(1800, 2048, 512) == (1288, 512)  # too much: lowered, sources keep 512
    assert split(600, 2048, 512) == (300, 300)  # little room: at most half to the sources
    assert split(-50, 384, 512) == (0, 0)  # the question alone overflows


class Counter:
    """Counts like a tokenizer whose tokens are ``factor`` times the estimate (unit fake)."""

    def __init__(self, context: int, factor: float) -> None:
        self.context, self.factor, self.calls = context, factor, 0

    def max_model_len(self) -> int:
        return self.context

    def count_chat_tokens(self, messages: list[dict[str, str]]) -> int:
        self.calls += 1
        return int(sum(estimate_tokens(m["content"]) + 5 for m in messages) * self.factor)


PASSAGES = [hit(n, "The model reached 28.4 BLEU on the translation task after training. " * 12)
            for n in range(1, 9)]


def test_one_count_when_the_estimate_holds() -> None:
    llm = Counter(2048, 1.0)
    fitted = fit_prompt(llm, "What BLEU score?", PASSAGES, 384, 512)
    assert llm.calls == 1 and fitted.max_tokens == 384
    assert fitted.prompt_tokens + fitted.max_tokens <= 2048 - MARGIN
    assert 1 <= len(fitted.prompt.sources) < len(PASSAGES)


def test_a_low_estimate_shrinks_the_sources_not_the_answer() -> None:
    llm = Counter(2048, 1.6)  # the tokenizer makes 60% more tokens than estimated
    fitted = fit_prompt(llm, "What BLEU score?", PASSAGES, 384, 512)
    assert fitted.prompt_tokens + fitted.max_tokens <= 2048 - MARGIN
    assert fitted.max_tokens >= 192 and 2 <= llm.calls <= 3
    assert fitted.prompt.sources


def test_build_prompt_respects_the_budget() -> None:
    small = build_prompt("Q?", PASSAGES, 300)
    large = build_prompt("Q?", PASSAGES, 3000)
    assert 0 < len(small.sources) < len(large.sources)


# -- the real server ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def llm(llm_url: str) -> Iterator[LLMClient]:
    with LLMClient(LLMSettings.model_validate({"base_url": llm_url})) as client:
        yield client


@pytest.mark.cpu_model
@pytest.mark.slow
@pytest.mark.llm
def test_estimate_is_calibrated_on_the_served_tokenizer(corpus_settings: Settings,
                                                        llm: LLMClient) -> None:
    db = sqlite3.connect(corpus_settings.data_dir / "library.sqlite")
    rows = db.execute("SELECT c.text, p.title, p.year, c.page_start FROM chunks c "
                      "JOIN papers p ON p.id = c.paper_id ORDER BY c.paper_id, c.ordinal")
    blocks = [prompts.source_block(1, title, year, page, text)
              for text, title, year, page in rows.fetchall()]
    db.close()
    assert len(blocks) > 1000
    pairs = [(estimate_tokens(b), llm.count_tokens(b)) for b in blocks]
    ratios = sorted(e / x for e, x in pairs)
    assert ratios[0] >= 0.7 and ratios[-1] <= 1.35, (ratios[0], ratios[-1])
    assert 0.95 <= ratios[len(ratios) // 2] <= 1.1  # the median passage
    six = [sum(e for e, _ in pairs[i:i + 6]) / sum(x for _, x in pairs[i:i + 6])
           for i in range(0, len(pairs) - 6, 6)]
    assert min(six) >= 0.75 and max(six) <= 1.2  # what a prompt of six passages costs


@pytest.mark.cpu_model
@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.parametrize("requested", [384, 1500, 2048])
def test_long_question_and_large_max_tokens_fit_the_context(
        corpus_settings: Settings, llm: LLMClient, requested: int) -> None:
    from index.open import open_library

    hits = Retriever(corpus_settings, open_library(corpus_settings)).search(
        LONG_QUESTION, k=8).hits
    fitted = fit_prompt(llm, LONG_QUESTION, hits, requested, 512)
    context = llm.max_model_len()
    assert fitted.prompt_tokens == llm.count_chat_tokens(fitted.prompt.messages)
    assert fitted.prompt_tokens + fitted.max_tokens <= context
    assert fitted.prompt.sources and fitted.prompt.sources == hits[:len(fitted.prompt.sources)]
    if requested == 384:
        assert fitted.max_tokens == 384
    else:  # lowered for this request, the passages keep their share
        assert fitted.max_tokens < requested
        assert fitted.prompt_tokens - llm.count_chat_tokens(
            prompts.answer_messages(LONG_QUESTION, [])) >= 400
    stream = llm.stream_chat(fitted.prompt.messages, max_tokens=fitted.max_tokens,
                             temperature=0.0)
    with stream:
        first = next(stream)  # vLLM accepted the request
    assert first


@pytest.mark.cpu_model
@pytest.mark.llm
def test_a_question_longer_than_the_context_is_one_line(llm: LLMClient) -> None:
    question = "What label smoothing value was used when training the Transformer? " * 400
    with pytest.raises(PromptTooLongError) as err:
        fit_prompt(llm, question, PASSAGES, 384, 512)
    message = str(err.value)
    assert "\n" not in message and f"of the {llm.max_model_len()} tokens" in message
    assert "Shorten the question" in message
