"""The two tabs' components and their events. Element ids (``elem_id``) are what the
browser tests select: question, ask, stop, new-chat, copy-answer, chatbot, sources, ..."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from core.settings import Settings
from ui import persist
from ui.assets import COPY_JS
from ui.chat import EMPTY_SOURCES, ChatHandler
from ui.errors import reports_errors
from ui.library import COLUMNS, LibraryActions
from ui.viewer import (
    COPY_MARKDOWN_JS,
    DOWNLOAD_BIBTEX_JS,
    DOWNLOAD_MARKDOWN_JS,
    VIEWER_HTML,
)


@dataclass
class ChatTab:
    papers: gr.Dropdown
    ask_events: list[gr.events.Dependency] = field(default_factory=list)
    restore_outputs: list[Any] = field(default_factory=list)  # chatbot, sources, turns, copy
    saved: gr.BrowserState | None = None


@dataclass
class LibraryTab:
    table: gr.Dataframe
    summary: gr.Markdown
    remove_sel: gr.Dropdown
    change_events: list[gr.events.Dependency] = field(default_factory=list)


def chat_tab(settings: Settings, chat: ChatHandler) -> ChatTab:
    with gr.Row():
        with gr.Column(scale=3, elem_id="chat-column"):
            chatbot = gr.Chatbot(elem_id="chatbot", height=540, buttons=[], show_label=False,
                                 placeholder="Ask about the papers in the library. Answers "
                                 "cite passages as [n]; click a number to see its source.")
            with gr.Row():
                question = gr.Textbox(elem_id="question", show_label=False, scale=6,
                                      placeholder="Your question (English or 日本語)…")
                ask = gr.Button("Ask", variant="primary", elem_id="ask", scale=1, min_width=70)
                stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1, min_width=70)
            with gr.Row():
                small: dict[str, Any] = {"size": "sm", "min_width": 60}
                new = gr.Button("New conversation", elem_id="new-chat", **small)
                copy = gr.Button("Copy answer", elem_id="copy-answer", **small)
                copy_md = gr.Button("Copy as Markdown", elem_id="copy-md", **small)
                download_md = gr.Button("Download .md", elem_id="download-md", **small)
                bibtex = gr.Button("BibTeX", elem_id="bibtex", **small)
            with gr.Accordion("Settings", open=False, elem_id="chat-settings"):
                k = gr.Slider(1, 12, value=settings.retrieval.k, step=1, elem_id="k",
                              label="Passages given to the model")
                papers = gr.Dropdown(choices=[], value=[], multiselect=True, elem_id="papers",
                                     label="Only these papers (empty: the whole library)")
                temperature = gr.Slider(0.0, 1.5, value=settings.llm.temperature, step=0.05,
                                        label="Temperature", elem_id="temperature")
                # Up to the served context: a maximum that leaves the passages too little
                # room is lowered for that answer (rag.budget), never refused by the server.
                max_tokens = gr.Slider(16, max(2048, settings.llm.max_tokens),
                                       value=settings.llm.max_tokens, step=16,
                                       label="Maximum tokens of an answer", elem_id="max-tokens")
                mode = gr.Radio(["auto", "generate", "extract"], value=settings.llm.answer_mode,
                                label="Answer mode", elem_id="answer-mode",
                                info="generate: the model's answer, each sentence checked; "
                                "extract: the passages' best sentences, quoted (no model); "
                                "auto: the model's, or the quotes when it degenerates")
        with gr.Column(scale=2, elem_id="side-column"):
            gr.HTML(VIEWER_HTML, elem_id="viewer", padding=False)
            gr.Markdown("### Sources")
            sources = gr.HTML(EMPTY_SOURCES, elem_id="sources")
    turns = gr.State([])
    saved = gr.BrowserState([], storage_key=persist.STORAGE_KEY)
    copy_text = gr.Textbox(visible=False, elem_id="copy-text")
    ask_kwargs: dict[str, Any] = {
        "fn": reports_errors(chat.respond, on_error=chat.failed),
        "inputs": [question, turns, k, papers, temperature, max_tokens, mode],
        "outputs": [question, chatbot, sources, turns, copy_text],
        "show_progress": "hidden",  # the chatbot shows its own pending state
        "trigger_mode": "always_last",  # a question asked meanwhile runs next, never dropped
    }
    events: list[Any] = [question.submit(**ask_kwargs), ask.click(**ask_kwargs)]
    for event in events:  # kept in the browser: a reload brings the conversation back
        event.then(persist.save, inputs=turns, outputs=saved, queue=False)
    stop.click(chat.stop, queue=False)
    reset: dict[str, Any] = {"fn": chat.reset, "queue": False,
                             "outputs": [chatbot, sources, turns, copy_text, question]}
    new.click(**reset).then(persist.cleared, outputs=saved, queue=False)
    chatbot.clear(**reset).then(persist.cleared, outputs=saved, queue=False)
    copy.click(None, inputs=copy_text, js=COPY_JS)
    copy_md.click(None, js=COPY_MARKDOWN_JS)
    download_md.click(None, js=DOWNLOAD_MARKDOWN_JS)
    bibtex.click(None, js=DOWNLOAD_BIBTEX_JS)
    return ChatTab(papers, events, [chatbot, sources, turns, copy_text], saved)


def library_tab(settings: Settings, actions: LibraryActions) -> LibraryTab:
    summary = gr.Markdown(elem_id="library-summary")
    table = gr.Dataframe(headers=COLUMNS, elem_id="library-table", interactive=False,
                         datatype=["str", "markdown", "number", "number", "number", "markdown"],
                         wrap=True)
    with gr.Row():
        ids = gr.Textbox(label="Add by arXiv id or URL", elem_id="add-ids", scale=4,
                         placeholder="1706.03762 2106.09685")
        add = gr.Button("Add", elem_id="add-ids-button", scale=1)
    with gr.Row():
        query = gr.Textbox(label="Search arXiv and add the results", elem_id="search", scale=4)
        n = gr.Number(5, label="Results", precision=0, minimum=1, maximum=50, scale=1)
        search = gr.Button("Search and add", elem_id="search-button", scale=1)
    upload = gr.File(label=f"Upload a PDF (at most {settings.ui.max_upload_mb:g} MiB)",
                     file_types=[".pdf"], type="filepath", elem_id="upload")
    with gr.Row():
        remove_sel = gr.Dropdown(choices=[], value=[], multiselect=True, scale=4,
                                 label="Remove papers", elem_id="remove-papers")
        remove = gr.Button("Remove", variant="stop", elem_id="remove-button", scale=1)
    status = gr.Markdown(elem_id="library-status")
    one_at_a_time: dict[str, Any] = {"concurrency_limit": 1, "concurrency_id": "library",
                     "show_progress": "full"}
    views = [status, table]  # the progress bar shows over the table while papers are added
    events = [
        add.click(reports_errors(actions.add_ids), ids, views, **one_at_a_time),
        search.click(reports_errors(actions.add_search), [query, n], views, **one_at_a_time),
        upload.upload(reports_errors(actions.add_upload), upload, views, **one_at_a_time),
        remove.click(reports_errors(actions.remove), remove_sel, views, **one_at_a_time),
    ]
    return LibraryTab(table, summary, remove_sel, events)
