"""Helpers for the browser tests: the chat app served in-process on a free loopback port,
Debian's Chromium driven by Playwright, and screenshots under test-artifacts/."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from rag.engine import Engine
from tests.helpers import REPO, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = REPO / "test-artifacts" / "screenshots"
ANSWER_TIMEOUT_MS = 240_000  # a CPU model shared with other tests can be slow


@dataclass
class RunningApp:
    url: str
    engine: Engine
    settings: Settings


@contextmanager
def running_app(settings: Settings) -> Iterator[RunningApp]:
    """Build the engine and the app as `paperchat chat` does, serve it on a free port."""
    from rag.engine import build_engine
    from ui.app import build_app, launch_app

    settings = settings.model_copy(deep=True)
    settings.ui.port = free_port()
    engine = build_engine(settings)
    app = build_app(settings, engine)
    url = launch_app(app, settings, block=False)
    try:
        yield RunningApp(url.rstrip("/"), engine, settings)
    finally:
        app.close()
        engine.llm.close()


def served_model_path(llm_url: str) -> str:
    """The model folder a vLLM server serves (its /v1/models 'root'), to start another."""
    with urllib.request.urlopen(f"{llm_url}/models", timeout=10) as resp:
        entry: dict[str, Any] = json.load(resp)["data"][0]
    return str(entry.get("root") or entry["id"])


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_chat(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url)
    page.locator("#question textarea").wait_for()
    return page


def ask(page: Any, question: str) -> None:
    box = page.locator("#question textarea")
    box.fill(question)
    page.locator("#ask").click()


def answers(page: Any) -> Any:
    """Finished answers in the chat (each ends with its timings line) and abstentions."""
    return page.locator("#chatbot .pc-timings")


def wait_answers(page: Any, n: int, timeout_ms: int = ANSWER_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#chatbot .pc-timings').length >= n", arg=n,
        timeout=timeout_ms)


WATCH_STREAMING = """() => {
  window.__pcStream = [];
  const seen = () => {
    const el = document.querySelector('#chatbot .pc-streaming');
    if (el) window.__pcStream.push(el.textContent.length);
  };
  new MutationObserver(seen).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}"""


def streamed_lengths(page: Any) -> list[int]:
    """Text lengths of the partial answer each time the page redrew it while streaming."""
    return list(page.evaluate("() => window.__pcStream || []"))


def toast_texts(page: Any) -> list[str]:
    return list(page.locator(".toast-body").all_inner_texts())
