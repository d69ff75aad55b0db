"""What the page shows about the process: the model server's health and model, and the
library's papers (table, counts, choices of the paper filter and the remove list)."""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr

from core.errors import LLMError
from core.settings import Settings
from rag.engine import Engine
from ui.chat import paper_choices
from ui.errors import message
from ui.library import table_rows


class Status:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def health(self) -> str:
        """One line: the model and whether its server answers (checked on every call)."""
        llm = self.engine.llm
        url = escape(llm.base_url)
        if not llm.health():
            return (f"<span class='pc-down'>● Model server <code>{url}</code> is not reachable"
                    "</span>: answers fail until it is back (start it with "
                    "<code>paperchat serve-llm</code>). The library still works.")
        try:
            model = llm.served_model()
        except LLMError as err:
            return f"<span class='pc-down'>● {escape(message(err))}</span>"
        return (f"<span class='pc-up'>● Model <b>{escape(model)}</b></span> at "
                f"<code>{url}</code>: server up.")

    def summary(self) -> str:
        papers = self.engine.library.papers()
        if not papers:
            return ("The library is empty: add papers below (arXiv ids, search, or a PDF), "
                    "or run `paperchat ingest`.")
        chunks = sum(p.chunks for p in papers)
        return f"{len(papers)} papers, {chunks} passages in `{self.settings.data_dir}`."

    def library_views(self, selected: list[str] | None) -> tuple[Any, ...]:
        """(table rows, summary, paper filter, remove list) after the library changed."""
        choices = paper_choices(self.engine)
        ids = {pid for _, pid in choices}
        keep = [s for s in (selected or []) if s in ids]
        return (table_rows(self.engine.library), self.summary(),
                gr.Dropdown(choices=choices, value=keep), gr.Dropdown(choices=choices, value=[]))
