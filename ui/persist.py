"""The conversation kept across a page reload: the finished turns are saved in the
browser's localStorage (Gradio's ``BrowserState``, encrypted with a secret of this server
process) after each answer and restored when the page loads; "New conversation" empties it.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from ui.chat import Turn, sources_panel, to_messages

STORAGE_KEY = "paperchat-conversation"
MAX_TURNS = 30  # the newest turns kept (localStorage holds a few MiB)
_FIELDS = {f.name for f in fields(Turn)}


def save(turns: list[Turn]) -> list[dict[str, Any]]:
    """What the browser keeps: the newest turns as plain dicts (a turn still streaming
    when the page saves is kept as stopped)."""
    out = []
    for turn in turns[-MAX_TURNS:]:
        d = asdict(turn)
        if d.get("status") == "streaming":
            d["status"] = "stopped"
        out.append(d)
    return out


def load(saved: Any) -> list[Turn]:
    """The turns from what the browser kept; anything malformed is left out."""
    turns = []
    for d in saved if isinstance(saved, list) else []:
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str)
                                              for k in ("question", "answer", "html", "sources")):
            continue
        values = {k: v for k, v in d.items() if k in _FIELDS}
        if values.get("status") not in ("done", "stopped", "failed"):
            values["status"] = "stopped"
        turns.append(Turn(**values))
    return turns


def restore(saved: Any) -> tuple[list[dict[str, str]], str, list[Turn], str]:
    """(chatbot, sources panel, turns, copy text) of the kept conversation."""
    turns = load(saved)
    copy = next((t.answer for t in reversed(turns) if t.complete), "")
    return to_messages(turns), sources_panel(turns), turns, copy


def cleared() -> list[dict[str, Any]]:
    return []
