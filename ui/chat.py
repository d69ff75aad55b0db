"""The chat handler: a question (+ the conversation so far) streamed through the engine into
the chatbot, the sources panel and the conversation state.

The conversation lives in a ``gr.State`` list of :class:`Turn`; the chatbot is redrawn
from it, so a failed question (model server down) leaves no half-made state behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import gradio as gr

from core.settings import Settings
from core.types import Answer
from rag.answer import AnswerMode, Event
from rag.engine import Engine
from ui import render
from ui.labels import badge_cards, labels_for

STREAM_INTERVAL_S = 0.08  # coalesce tokens: at most ~12 redraws a second per chat
EMPTY_SOURCES = ("<p class='pc-none'>Ask a question: the passages each answer cites "
                 "appear here.</p>")

Messages = list[dict[str, str]]
Outputs = tuple[Any, Messages, str, list["Turn"], str]
# Only the first frame of an answer clears the question box; later frames leave it alone,
# so nothing the user types meanwhile is wiped by a late frame.
KEEP = gr.skip
# done: answered; streaming: being answered; stopped: Stop pressed (or the page left while it
# streamed); failed: an error, shown in place of the answer. Only 'done' turns are history.
TurnStatus = Literal["done", "streaming", "stopped", "failed"]


@dataclass
class Turn:
    question: str
    answer: str  # plain text with [n] markers (what follow-ups and copy use)
    html: str  # what the chatbot shows
    sources: str  # the sources-panel section
    status: TurnStatus = "done"

    @property
    def complete(self) -> bool:
        return self.status == "done"


def to_messages(turns: list[Turn]) -> Messages:
    out: Messages = []
    for t in turns:
        note = "<br><small class='pc-note'>(stopped)</small>" if t.status == "stopped" else ""
        out += [{"role": "user", "content": t.question},
                {"role": "assistant", "content": t.html + note}]
    return out


def sources_panel(turns: list[Turn]) -> str:
    """Newest answer's sources first."""
    sections = [t.sources for t in reversed(turns) if t.sources]
    return "".join(sections) or EMPTY_SOURCES


def history(turns: list[Turn]) -> list[tuple[str, str]]:
    return [(t.question, t.answer) for t in turns if t.complete]


class ChatHandler:
    """Answers questions for every browser session with the one engine of the process.

    Stop and New conversation are cooperative: the button records the session's request,
    the answer loop sees it at the next token and closes the model's stream (the server
    stops generating); Stop keeps the partial answer, marked as stopped, New conversation
    empties the chat. (Cancelling the Gradio event instead would mark the chatbot failed.)
    """

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._asked: dict[str, str] = {}  # session -> "stop" | "reset"
        self._lock = threading.Lock()

    def _ask(self, request: gr.Request, what: str) -> None:
        with self._lock:
            self._asked[request.session_hash or ""] = what

    def _take(self, session: str) -> str | None:
        with self._lock:
            return self._asked.pop(session, None)

    def stop(self, request: gr.Request) -> None:
        self._ask(request, "stop")

    def reset(self, request: gr.Request) -> tuple[Messages, str, list[Turn], str, str]:
        self._ask(request, "reset")
        return new_conversation()

    def respond(self, question: str, turns: list[Turn], k: float, papers: list[str] | None,
                temperature: float, max_tokens: float, mode: AnswerMode | None,
                request: gr.Request) -> Iterator[Outputs]:
        """Yield (textbox, chatbot, sources, turns, copy text) as the answer streams in."""
        question = (question or "").strip()
        turns = stop_streaming(turns)
        session = request.session_hash or ""
        self._take(session)  # a Stop pressed before this question does not count
        copy = next((t.answer for t in reversed(turns) if t.complete), "")
        if not question:
            yield "", to_messages(turns), sources_panel(turns), turns, copy
            return
        pending = [*to_messages(turns), {"role": "user", "content": question}]
        yield "", pending, sources_panel(turns), turns, copy
        events = self.engine.answerer.stream(
            question, history(turns), k=int(k), paper_ids=list(papers or []) or None,
            temperature=float(temperature), max_tokens=int(max_tokens), mode=mode or None)
        yield from self._stream(question, turns, events, session, copy)

    def _stream(self, question: str, turns: list[Turn], events: Iterator[Event],
                session: str, copy: str) -> Iterator[Outputs]:
        text, last = "", 0.0
        for event in events:
            asked = self._take(session)  # a Stop after the last token changes nothing
            if asked == "reset" or (asked == "stop" and event.kind == "token"):
                if isinstance(events, Generator):
                    events.close()  # closes the HTTP stream: the server stops generating
                turns = [] if asked == "reset" else [
                    *turns, Turn(question, text, render.streaming_html(text), "", "stopped")]
                yield KEEP(), to_messages(turns), sources_panel(turns), turns, \
                    copy if turns else ""
                return
            if event.kind == "token":
                text += event.text
                if time.monotonic() - last >= STREAM_INTERVAL_S:
                    last = time.monotonic()
                    partial = Turn(question, text, render.streaming_html(text), "", "streaming")
                    yield KEEP(), to_messages([*turns, partial]), sources_panel(turns), \
                        [*turns, partial], copy
            elif event.kind == "done" and event.answer is not None:
                turns = [*turns, self.finished(event.answer, len(turns))]
                yield KEEP(), to_messages(turns), sources_panel(turns), turns, turns[-1].answer

    @staticmethod
    def failed(error: str, question: str, turns: list[Turn], *rest: Any) -> Outputs:
        """The outputs after an error: the question stays, with the error as its answer."""
        turns = [*stop_streaming(turns),
                 Turn(question.strip(), "", render.error_html(error), "", "failed")]
        copy = next((t.answer for t in reversed(turns) if t.complete), "")
        return KEEP(), to_messages(turns), sources_panel(turns), turns, copy

    def finished(self, answer: Answer, turn: int) -> Turn:
        html = render.answer_html(answer, turn) + render.timings_html(answer)
        flagged = {p.id: p.flags for p in self.engine.library.papers() if p.flags}
        sources = badge_cards(render.sources_html(answer, turn), flagged,
                              labels_for(answer.question))
        return Turn(answer.question, render.plain_text(answer), html, sources)


def stop_streaming(turns: list[Turn]) -> list[Turn]:
    return [replace(t, status="stopped") if t.status == "streaming" else t for t in turns]


def new_conversation() -> tuple[Messages, str, list[Turn], str, str]:
    return [], EMPTY_SOURCES, [], "", ""


def paper_choices(engine: Engine) -> list[tuple[str, str]]:
    """(label, paper id) of every paper, for the paper filter and the remove list."""
    return [(f"{p.title[:70]} ({p.year or 'n.d.'}) [{p.id}]", p.id)
            for p in sorted(engine.library.papers(), key=lambda p: p.title.lower())]
