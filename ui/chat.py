"""The chat handler: a question (+ the conversation so far) streamed through the engine into
the chatbot, the sources panel and the conversation state.

The conversation lives in a ``gr.State`` list of :class:`Turn`; the chatbot is redrawn
from it, so a failed question (model server down) leaves no half-made state behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from paperchat.settings import Settings
from paperchat.types import Answer
from rag.engine import Engine
from ui import render

STREAM_INTERVAL_S = 0.08  # coalesce tokens: at most ~12 redraws a second per chat
EMPTY_SOURCES = ("<p class='pc-none'>Ask a question: the passages each answer cites "
                 "appear here.</p>")

Messages = list[dict[str, str]]
Outputs = tuple[str, Messages, str, list["Turn"], str]


@dataclass
class Turn:
    question: str
    answer: str  # plain text with [n] markers (what follow-ups and copy use)
    html: str  # what the chatbot shows
    sources: str  # the sources-panel section
    complete: bool = True  # False while streaming, and for an answer that was stopped


def to_messages(turns: list[Turn]) -> Messages:
    out: Messages = []
    for t in turns:
        stopped = "" if t.complete else "<br><small class='pc-note'>(stopped)</small>"
        out += [{"role": "user", "content": t.question},
                {"role": "assistant", "content": t.html + stopped}]
    return out


def sources_panel(turns: list[Turn]) -> str:
    """Newest answer's sources first."""
    sections = [t.sources for t in reversed(turns) if t.sources]
    return "".join(sections) or EMPTY_SOURCES


def history(turns: list[Turn]) -> list[tuple[str, str]]:
    return [(t.question, t.answer) for t in turns if t.complete]


class ChatHandler:
    """Answers questions for every browser session with the one engine of the process."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def respond(self, question: str, turns: list[Turn], k: float, papers: list[str] | None,
                temperature: float, max_tokens: float) -> Iterator[Outputs]:
        """Yield (textbox, chatbot, sources, turns, copy text) as the answer streams in."""
        question = (question or "").strip()
        copy = turns[-1].answer if turns else ""
        if not question:
            yield "", to_messages(turns), sources_panel(turns), turns, copy
            return
        pending = [*to_messages(turns), {"role": "user", "content": question}]
        yield "", pending, sources_panel(turns), turns, copy
        events = self.engine.answerer.stream(
            question, history(turns), k=int(k), paper_ids=list(papers or []) or None,
            temperature=float(temperature), max_tokens=int(max_tokens))
        text, last = "", 0.0
        for event in events:
            if event.kind == "token":
                text += event.text
                if time.monotonic() - last >= STREAM_INTERVAL_S:
                    last = time.monotonic()
                    partial = Turn(question, text, render.streaming_html(text), "", False)
                    yield "", to_messages([*turns, partial]), sources_panel(turns), \
                        [*turns, partial], copy
            elif event.kind == "done" and event.answer is not None:
                turns = [*turns, self.finished(event.answer, len(turns))]
                yield "", to_messages(turns), sources_panel(turns), turns, turns[-1].answer

    @staticmethod
    def finished(answer: Answer, turn: int) -> Turn:
        html = render.answer_html(answer, turn) + render.timings_html(answer)
        return Turn(answer.question, render.plain_text(answer), html,
                    render.sources_html(answer, turn))


def new_conversation() -> tuple[Messages, str, list[Turn], str, str]:
    return [], EMPTY_SOURCES, [], "", ""


def paper_choices(engine: Engine) -> list[tuple[str, str]]:
    """(label, paper id) of every paper, for the paper filter and the remove list."""
    return [(f"{p.title[:70]} ({p.year or 'n.d.'}) [{p.id}]", p.id)
            for p in sorted(engine.library.papers(), key=lambda p: p.title.lower())]
