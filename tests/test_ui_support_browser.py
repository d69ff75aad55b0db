"""Checked answers in a real browser: Debian's Chromium driven by Playwright against the chat
served on a free loopback port, over a library of the Transformer paper built by the real
ingest. The model is a scripted server (tests/llm_stub.py) so that the answer has, on
demand, one supported and one unsupported sentence; screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.helpers import CORPUS_PDFS, ingest_into, make_settings
from tests.llm_stub import ScriptedServer, scripted_server, source_number
from tests.ui_helpers import (
    CHROMIUM,
    RunningApp,
    ask,
    open_chat,
    running_app,
    shot,
    wait_answers,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)

BLEU = ("What BLEU score did the big Transformer model reach on the WMT 2014 "
        "English-to-German translation task?")


def mixed(messages: list[dict[str, str]]) -> str:
    """One supported sentence (28.4, English-to-German) and one unsupported (41.0 given for
    English-to-German: it is the English-to-French score), citing the passage with both."""
    n = source_number(messages, "28.4", "41.0")
    return (f"The big Transformer reached a BLEU score of 28.4 on the WMT 2014 "
            f"English-to-German translation task [{n}]. On English-to-German it later "
            f"reached 41.0 BLEU [{n}].")


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with scripted_server(mixed) as s:
        yield s


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, server: ScriptedServer) -> Iterator[RunningApp]:
    settings: Settings = make_settings(tmp_path_factory.mktemp("support-ui") / "data",
                                       llm={"base_url": server.url})
    assert ingest_into(settings, [str(CORPUS_PDFS / "1706.03762.pdf")]) == 0
    with running_app(settings) as running:
        yield running


@pytest.fixture
def page(browser: Any, app: RunningApp) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield open_chat(ctx, app.url)
    ctx.close()


def test_an_unsupported_sentence_is_marked_with_its_reason(page: Any) -> None:
    ask(page, BLEU)
    wait_answers(page, 1)
    bad = page.locator("#chatbot .pc-sent.pc-unsupported")
    good = page.locator("#chatbot .pc-sent.pc-supported")
    assert bad.count() == 1 and good.count() == 1, page.locator("#chatbot").inner_html()
    assert "41.0" in bad.inner_text() and "28.4" in good.inner_text()
    title = bad.get_attribute("title") or ""
    assert "41.0 is not in the sentence of [" in title and "about English-to-German" in title
    assert (good.get_attribute("title") or "").startswith("Supported by [")
    assert bad.locator(".pc-sflag").inner_text().lower() == "unsupported"  # visible flag
    style = bad.evaluate("e => getComputedStyle(e).textDecorationStyle")
    assert style == "wavy"
    assert good.evaluate("e => getComputedStyle(e).textDecorationLine") == "none"
    summary = page.locator("#chatbot .pc-answer").inner_text()
    assert "1 of 2 sentences supported by their citations; 1 unsupported" in summary
    evidence = page.locator("#sources .pc-evidence")
    assert evidence.count() == 1 and "Evidence" in evidence.inner_text()
    assert "28.4" in evidence.inner_text()
    order = page.evaluate("""() => { const e = document.querySelector('#sources .pc-evidence');
        const c = document.querySelector('#sources .pc-card');
        return !!(e.compareDocumentPosition(c) & Node.DOCUMENT_POSITION_FOLLOWING); }""")
    assert order, "the evidence sits above the source cards"
    bad.hover()
    after = bad.evaluate("e => getComputedStyle(e, '::after').content")
    assert "41.0 is not in the sentence of" in after, after
    shot(page, "support-1-one-supported-one-unsupported")


def test_the_mode_control_reaches_the_answerer(page: Any, server: ScriptedServer) -> None:
    page.locator("#chat-settings").get_by_text("Settings").click()
    page.locator("#answer-mode").get_by_text("extract", exact=True).click()
    asked = len(server.requests)
    ask(page, BLEU)
    wait_answers(page, 1)
    label = page.locator("#chatbot .pc-quoted-label")
    assert "Quoted from the sources (no model was asked)." in label.inner_text()
    assert len(server.requests) == asked, "extract never calls the model"
    assert page.locator("#chatbot .pc-sent.pc-unsupported").count() == 0
    assert "28.4" in page.locator("#chatbot .pc-answer").inner_text()
    shot(page, "support-2-extract-mode")
