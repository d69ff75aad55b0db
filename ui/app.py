"""`paperchat chat`: the Gradio Blocks app (a Chat tab and a Library tab) and its launch.

One engine per process (library, embedder, model client) serves every browser session;
each session keeps its conversation in a ``gr.State`` (and a copy in the browser, see
:mod:`ui.persist`). The app serves the library's PDFs and rendered pages itself
(:mod:`ui.routes`) for the page viewer (:mod:`ui.viewer`). Errors reach the page through
:mod:`ui.errors`. Binds ``ui.host:ui.port`` (loopback by default), never asks for a share
link unless ``ui.share``, and requires ``ui.auth`` when bound to another address or shared
(a public link with upload and remove must not be open to anyone who finds it).
"""

from __future__ import annotations

import ipaddress
import logging
import weakref
from typing import Any

import gradio as gr
from starlette.routing import BaseRoute

from core.errors import ConfigError
from core.settings import Settings, UISettings
from ingest.pageview import PageView
from rag.engine import Engine, build_engine
from ui import persist
from ui.assets import CSS, HEAD
from ui.chat import ChatHandler
from ui.layout import ChatTab, LibraryTab, chat_tab, library_tab
from ui.library import LibraryActions
from ui.routes import page_routes
from ui.status import Status
from ui.viewer import VIEWER_CSS, VIEWER_JS

log = logging.getLogger(__name__)
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: works offline
# Each app's own routes (PDFs, pages), handed to Gradio's FastAPI app when it launches.
ROUTES: weakref.WeakKeyDictionary[gr.Blocks, list[BaseRoute]] = weakref.WeakKeyDictionary()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(ui: UISettings) -> tuple[str, str] | None:
    """``ui.auth`` as (user, password); required when the chat is bound beyond loopback or
    shared through a public Gradio link."""
    if not ui.auth:
        if ui.share:
            raise ConfigError("ui.share would publish the chat (with upload and remove) on a "
                              "public link without a password.",
                              "Set ui.auth (PAPERCHAT_UI_AUTH='user:password') or turn "
                              "ui.share off.")
        if not is_loopback(ui.host):
            raise ConfigError(f"The chat would listen on {ui.host} without a password.",
                              "Set ui.auth (PAPERCHAT_UI_AUTH='user:password') or bind "
                              "ui.host to 127.0.0.1.")
        return None
    user, sep, password = ui.auth.partition(":")
    if not sep or not user or not password:
        raise ConfigError("ui.auth must look like 'user:password'.",
                          "Set PAPERCHAT_UI_AUTH='user:password'.")
    return user, password


def page_view(settings: Settings, engine: Engine) -> PageView:
    """The viewer's pages of the engine's library (images cached in the data dir)."""
    return PageView(engine.library, settings.data_dir / "cache" / "pages",
                    settings.ui.page_cache_mb)


def build_app(settings: Settings, engine: Engine) -> gr.Blocks:
    """The Blocks app over ``engine`` (not launched: see :func:`launch_app`), with its own
    routes for the library's PDFs and pages (``ui.routes``)."""
    status = Status(settings, engine)
    chat = ChatHandler(settings, engine)
    actions = LibraryActions(settings, engine.library)
    with gr.Blocks(title="paperchat", analytics_enabled=False) as app:
        header = gr.Markdown(elem_id="health")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                ct = chat_tab(settings, chat)
            with gr.Tab("Library", id="library", elem_id="library-tab"):
                lt = library_tab(settings, actions)
        _wire_refresh(app, status, header, ct, lt)
        app.load(persist.restore, inputs=ct.saved, outputs=ct.restore_outputs, queue=False)
    ROUTES[app] = page_routes(page_view(settings, engine))
    return app


def _wire_refresh(app: gr.Blocks, status: Status, header: gr.Markdown, ct: ChatTab,
                  lt: LibraryTab) -> None:
    """Health line on load, on a timer and after each answer; library views after changes."""
    refresh_out = [lt.table, lt.summary, ct.papers, lt.remove_sel]
    app.load(status.health, outputs=header, queue=False)
    app.load(status.library_views, inputs=ct.papers, outputs=refresh_out)
    gr.Timer(15).tick(status.health, outputs=header, queue=False)
    for event in ct.ask_events:
        event.then(status.health, outputs=header, queue=False)
    for event in lt.change_events:
        event.then(status.library_views, inputs=ct.papers, outputs=refresh_out)


def launch_kwargs(settings: Settings, routes: list[BaseRoute] | None = None) -> dict[str, Any]:
    ui = settings.ui
    return {
        "app_kwargs": {"routes": list(routes or [])},  # before Gradio's own routes
        "server_name": ui.host, "server_port": ui.port, "share": ui.share,
        "auth": parse_auth(ui), "max_file_size": int(ui.max_upload_mb * 1024 * 1024),
        "footer_links": ["gradio", "settings"], "ssr_mode": False, "quiet": True,
        "theme": gr.themes.Soft(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"]),
        "css": CSS + VIEWER_CSS, "head": HEAD + VIEWER_JS, "show_error": True,
    }


def launch_app(app: gr.Blocks, settings: Settings, *, block: bool = True) -> str:
    """Queue (``ui.concurrency`` chats at once) and serve the app; return its local URL."""
    if settings.ui.concurrency < 1:
        raise ConfigError("ui.concurrency must be at least 1.", "Set ui.concurrency to 4.")
    app.queue(default_concurrency_limit=settings.ui.concurrency)
    try:
        app.launch(prevent_thread_lock=not block, **launch_kwargs(settings, ROUTES.get(app)))
    except OSError as err:
        raise ConfigError(f"The chat cannot listen on {settings.ui.host}:{settings.ui.port}: "
                          f"{err}.", "Stop what uses that port or pass --port.") from err
    return str(app.local_url)


def run_chat(settings: Settings) -> int:
    """Build the engine once, then serve the chat until Ctrl-C."""
    parse_auth(settings.ui)  # refuse a bad bind before loading any model
    engine = build_engine(settings)
    app = build_app(settings, engine)
    print(f"paperchat chat: http://{settings.ui.host}:{settings.ui.port}  "
          f"(library {settings.data_dir}, model server {settings.llm.base_url}); Ctrl-C stops.",
          flush=True)
    launch_app(app, settings, block=True)
    return 0
