"""Extractive answers: the quoted evidence as the answer (``extract`` mode, and ``auto``
when the model's text degenerates), and the test of degeneration."""

from __future__ import annotations

from dataclasses import replace

from core.text import reflow, tokenize
from core.types import Answer, Quote, SentenceCheck
from rag.citations import MARKER
from rag.claims import number_values, numbers

# Why ``auto`` replaced the model's answer, for the reader (by degeneration reason).
REPLACED_WHY = {"repetition": "it repeated itself", "few-shot": "it copied an example from a "
                "passage", "prompt": "it echoed its instructions", "question": "it echoed the "
                "question", "empty": "it said nothing", "unsupported": "no sentence of it was "
                "supported by its citations", "restated": "it only restated the question"}
# Words an answer adds to any question without saying anything (stems).
GENERIC_WORDS = frozenset(tokenize("model paper answer source passage author use used "
                                   "according describe described"))


def own_references(text: str) -> str:
    """A passage's own reference markers ("Adam [31]") as "[ref 31]": in a quote they are
    the paper's citations, not passage numbers of the answer."""
    return MARKER.sub(lambda m: f"[ref {m.group(1)}]", text)


def quoted_text(quotes: list[Quote]) -> list[str]:
    """Each quote as one sentence of the answer: “text” [n] (the passage's own [31] as
    [ref 31])."""
    return [f"“{own_references(reflow(q.text))}” [{q.n}]" for q in quotes]


def use_quotes(answer: Answer, quotes: list[Quote]) -> None:
    """Make ``answer`` the quoted evidence: its text, citations and sentence checks (each
    quote is supported by the sentence it quotes). ``answer.sources`` must number the
    passages as the quotes do."""
    parts = quoted_text(quotes)
    answer.evidence = list(quotes)
    answer.answer = " ".join(parts)
    cited = sorted({q.n for q in quotes})
    answer.citations = [replace(answer.sources[n - 1], by="quote") for n in cited]
    answer.sentences = [SentenceCheck(text=t, citations=[q.n], support="supported",
                                      matches=[q], note="quoted from the passage")
                        for t, q in zip(parts, quotes, strict=True)]
    answer.removed_citations, answer.uncited_sentences = [], []
    answer.mode = "extract"


def degeneration(answer: Answer, echo_reasons: list[str], looped: bool) -> list[str]:
    """What is wrong with the model's checked answer: it looped ("repetition"), echoed the
    prompt or a few-shot example, trailed off ("fragment", stripped), left nothing
    ("empty"), no sentence of it is supported by its citations ("unsupported"), or its
    supported sentences only restate the question ("restated")."""
    reasons = ["repetition"] if looped else []
    reasons += echo_reasons
    supported = [s for s in answer.sentences if s.support == "supported"]
    if not answer.answer.strip():
        reasons.append("empty")
    elif not supported:
        reasons.append("unsupported")
    elif not any(adds_to(s.text, answer.question) for s in supported):
        reasons.append("restated")
    return reasons


def adds_to(sentence: str, question: str) -> bool:
    """Whether a sentence says more than the question asked: a number the question does
    not hold, or two content words it does not use ("The PaLM team dealt with the loss
    spikes [2]." only restates "How did the PaLM team deal with the loss spikes?")."""
    asked = number_values(question)
    if any(not (n.values & asked) for n in numbers(MARKER.sub(" ", sentence))):
        return True
    words = {w for w in tokenize(MARKER.sub(" ", sentence)) if not w[0].isdigit()}
    new = words - set(tokenize(question)) - GENERIC_WORDS
    return len(new) >= 2


def needs_quotes(reasons: list[str]) -> bool:
    """Whether ``auto`` replaces the answer: any reason but a stripped trailing fragment."""
    return any(r != "fragment" for r in reasons)
