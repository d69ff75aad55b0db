"""Degeneration guards (rag.guards) on crafted model output: loops are caught as they
stream, echoed prompt text and few-shot examples are stripped, and citation attribution
attaches nothing to echoed text."""

from __future__ import annotations

from core.types import Chunk, Hit
from rag import prompts
from rag.citations import attribute_uncited
from rag.guards import Echo, LoopGuard, ngram_repeat, strip_echo

QUESTION = "How do I make a French onion soup, and how long should the onions caramelize?"
FEW_SHOT = ("Table 20: Few-shot exemplars for chain-of-thought prompting.\n"
            "Q: The cafeteria had 23 apples. If they used 20 to make lunch and bought 6 more, "
            "how many apples do they have?\nA: The cafeteria had 23 apples originally. They "
            "used 20 to make lunch. So they had 23 - 20 = 3. They bought 6 more apples, so "
            "they have 3 + 6 = 9. The answer is 9.")


def hit(text: str, n: int = 1) -> Hit:
    chunk = Chunk(paper_id="2204.02311", ordinal=n, text=text, page_start=40, page_end=40,
                  char_start=0, char_end=len(text), id=n)
    return Hit(chunk=chunk, paper_title="PaLM: Scaling Language Modeling with Pathways",
               paper_year=2022, score=1.0)


def echo_for(passages: list[str]) -> Echo:
    blocks = [prompts.source_block(i, "PaLM", 2022, 40, p) for i, p in enumerate(passages, 1)]
    return Echo.of(prompts.answer_messages(QUESTION, blocks), QUESTION, passages)


def stream_into(guard: LoopGuard, text: str, size: int = 7) -> int | None:
    """Feed ``text`` in pieces as a stream would; the index of the piece that fired."""
    for i in range(0, len(text), size):
        if guard.feed(text[i:i + size]):
            return i
    return None


def test_a_repeated_sentence_stops_the_stream_where_the_repeat_begins() -> None:
    first = "The Transformer uses eight attention heads [1]. "
    text = first + "It is trained on WMT data [2]. " + first * 20
    guard = LoopGuard()
    fired = stream_into(guard, text)
    assert fired is not None and fired < len(first) * 4, "stopped early, not at max_tokens"
    assert guard.cut == len(first) + len("It is trained on WMT data [2]. ")
    assert text[:guard.cut].count("eight attention heads") == 1


def test_a_phrase_loop_without_full_stops_is_caught() -> None:
    text = "The answer is the model, " + "depending on your preference and the model, " * 6
    guard = LoopGuard()
    assert stream_into(guard, text) is not None
    assert guard.cut is not None and text[:guard.cut].count("depending on your") == 1
    assert ngram_repeat("A normal answer with different words in every single clause.") is None


def test_an_answer_that_does_not_loop_runs_to_its_end() -> None:
    text = ("The big model reached 28.4 BLEU on English-to-German [1]. On English-to-French "
            "it reached 41.0 BLEU [1]. Training took 3.5 days on eight GPUs [2].")
    guard = LoopGuard()
    assert stream_into(guard, text) is None and guard.cut is None


def test_a_continued_few_shot_example_is_stripped_and_gets_no_citation() -> None:
    echo = echo_for([FEW_SHOT])
    raw = ("Q: The cafeteria had 23 apples [1]. If they used 20 to make lunch and bought 6 "
           "more, how many apples do they have?")
    clean, reasons = strip_echo(raw, echo)
    assert clean == "" and reasons == ["few-shot"]
    # the example copied without its label: stripped too, not attributed to the passage
    copied = ("The cafeteria had 23 apples originally. They used 20 to make lunch. So they "
              "had 23 - 20 = 3.")
    assert strip_echo(copied, echo) == ("", ["few-shot"])
    text, added = attribute_uncited(copied, [hit(FEW_SHOT)], 0.6, echo)
    assert added == [] and "[1]" not in text
    _, attached = attribute_uncited(copied, [hit(FEW_SHOT)], 0.6)
    assert attached == [1, 1, 1], "the overlap alone would have cited the example"


def test_the_prompt_and_the_question_are_stripped_the_answer_kept() -> None:
    echo = echo_for(["The big model reached 28.4 BLEU on English-to-German."])
    raw = ("Answer: The big model reached 28.4 BLEU [1]. Put the number of the supporting "
           "source in square brackets after every claim. " + QUESTION + " The answer is:")
    clean, reasons = strip_echo(raw, echo)
    assert clean == "The big model reached 28.4 BLEU [1]."
    assert reasons == ["prompt", "question", "fragment"]


def test_the_system_prompts_example_is_echo() -> None:
    echo = echo_for(["Passage text."])
    clean, reasons = strip_echo('Example: "The base model uses 8 attention heads [2]."', echo)
    assert clean == "" and reasons == ["few-shot"]
    assert echo.copies_prompt("The base model uses 8 attention heads [2].")
