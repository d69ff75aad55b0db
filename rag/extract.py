"""Extractive answers: the quoted evidence as the answer (``extract`` mode, and ``auto``
when the model's text degenerates), and the test of degeneration."""

from __future__ import annotations

from dataclasses import replace

from core.text import reflow
from core.types import Answer, Quote, SentenceCheck

QUOTED_LABEL = "Quoted from the sources"


def quoted_text(quotes: list[Quote]) -> list[str]:
    """Each quote as one sentence of the answer: “text” [n]."""
    return [f"“{reflow(q.text)}” [{q.n}]" for q in quotes]


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
    ("empty"), or no sentence of it is supported by its citations ("unsupported")."""
    reasons = ["repetition"] if looped else []
    reasons += echo_reasons
    if not answer.answer.strip():
        reasons.append("empty")
    elif not any(s.support == "supported" for s in answer.sentences):
        reasons.append("unsupported")
    return reasons


def needs_quotes(reasons: list[str]) -> bool:
    """Whether ``auto`` replaces the answer: any reason but a stripped trailing fragment."""
    return any(r != "fragment" for r in reasons)
