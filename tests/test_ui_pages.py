"""The page viewer and the export in a real browser (Debian's Chromium, Playwright) against
the app over a library built by the real ingest, with the real vLLM server: a citation opens
its page with the passage highlighted where pdfium puts its words, pages turn, an uploaded
PDF's page opens with the network cut off, the exported Markdown lists every cited
reference and its BibTeX parses, a reload keeps the conversation, traversal gets 404."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bibtexparser
import pypdfium2 as pdfium
import pytest

from core.settings import Settings
from index.library import Catalog
from tests.helpers import CORPUS_PDFS, copy_library, ingest_into, make_settings
from tests.ui_helpers import (
    CHROMIUM,
    RunningApp,
    ask,
    open_chat,
    running_app,
    shot,
    wait_answers,
)
from ui import persist
from ui.uploads import content_digest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.llm]
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)

QUESTION = "What does source [1] say about the Transformer encoder layers?"
MAX_TOKENS = 128  # a citation comes early; a short answer keeps a shared CPU model quick
VIEWER_READY = """n => { const v = document.getElementById('pc-viewer');
  return v && !v.hidden && v.dataset.loaded === String(n); }"""


@pytest.fixture(scope="module")
def pages_library(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("viewer") / "data")
    assert ingest_into(settings, [str(CORPUS_PDFS / f"{p}.pdf")
                                  for p in ("1706.03762", "2106.09685")]) == 0
    return settings


@pytest.fixture(scope="module")
def viewer_app(pages_library: Settings, llm_url: str) -> Iterator[RunningApp]:
    settings = pages_library.model_copy(deep=True)
    settings.llm.base_url, settings.llm.temperature = llm_url, 0.0
    settings.llm.max_tokens = MAX_TOKENS
    with running_app(settings) as app:
        yield app


@pytest.fixture
def context(browser: Any, viewer_app: RunningApp) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        viewer_app.url) else route.abort())  # offline: nothing but the app answers
    yield ctx
    ctx.close()


def word_centres(pdf: Path, page: int, words: list[str]) -> list[tuple[str, float, float]]:
    """Centres of the characters of each word (that occurs once on the page), as fractions
    of the page, from pdfium's own text search: independent of the app's matching."""
    doc = pdfium.PdfDocument(pdf)
    try:
        p = doc[page - 1]
        width, height = p.get_size()
        text = p.get_textpage()
        out = []
        for word in words:
            search = text.search(word, match_case=True, match_whole_word=True)
            first = search.get_next()
            if first is None or search.get_next() is not None:
                continue
            for i in range(first[0], first[0] + first[1]):
                left, bottom, right, top = text.get_charbox(i)
                if right > left:
                    out.append((word, (left + right) / 2 / width, 1 - (top + bottom) / 2 / height))
        return out
    finally:
        doc.close()


def highlight_rects(page: Any, selector: str) -> list[tuple[float, float, float, float]]:
    """The highlight boxes as fractions of the page image, measured in the browser."""
    return [tuple(r) for r in page.evaluate("""sel => {
        const img = document.querySelector('#pc-viewer .pc-page-img').getBoundingClientRect();
        return [...document.querySelectorAll(sel)].map(e => { const r = e.getBoundingClientRect();
          return [(r.left - img.left) / img.width, (r.top - img.top) / img.height,
                  (r.right - img.left) / img.width, (r.bottom - img.top) / img.height]; });
    }""", selector)]


def covered(x: float, y: float, rects: list[tuple[float, float, float, float]]) -> bool:
    return any(r[0] - 0.002 <= x <= r[2] + 0.002 and r[1] - 0.002 <= y <= r[3] + 0.002
               for r in rects)


def open_first_citation(page: Any) -> tuple[str, int]:
    """Click [n] of the answer (or, when the small model cited nothing, the first card's
    "Show on page"); returns the card id and the page shown."""
    links = page.locator("#chatbot a.pc-cite")
    target = links.first if links.count() else page.locator("#sources a.pc-show").first
    card = (target.get_attribute("href") or "").split("#")[-1]  # src-<turn>-<n>
    if not links.count():  # a card of a passage given but not cited starts closed
        page.locator(f"#{card} summary").click()
    target.click()
    page_number = int(page.locator(f"#{card}").get_attribute("data-page") or 0)
    page.wait_for_function(VIEWER_READY, arg=page_number, timeout=60_000)
    return card, page_number


def test_citation_opens_the_highlighted_page_and_pages_turn(viewer_app: RunningApp,
                                                            context: Any) -> None:
    page = open_chat(context, viewer_app.url)
    ask(page, QUESTION)
    wait_answers(page, 1)
    card, number = open_first_citation(page)
    paper_id = page.locator(f"#{card}").get_attribute("data-paper") or ""
    image = page.locator("#pc-viewer img.pc-page-img")
    assert page.evaluate("() => document.querySelector('#pc-viewer img').naturalWidth") > 1000
    assert f"n={number}" in (image.get_attribute("src") or "")
    rects = highlight_rects(page, "#pc-viewer .pc-hl")
    assert rects, "no highlight over the passage"
    shot(page, "10-viewer-cited-page")
    # The passage's words, as pdfium's own search places them, lie under the highlight.
    paper = Catalog(viewer_app.settings).paper(paper_id)
    assert paper is not None
    pdf = viewer_app.settings.data_dir / paper.pdf_file
    text = page.locator(f"#{card} .pc-passage").inner_text()
    on_page = set(re.findall(r"[A-Za-z]{7,}", text))
    centres = word_centres(pdf, number, sorted(on_page))
    inside = [w for w, x, y in centres if covered(x, y, rects)]
    assert centres and len(inside) >= 0.9 * len(centres), (len(inside), len(centres))
    elsewhere = word_centres(pdf, number, ["Abstract", "References", "Acknowledgements"])
    assert not any(covered(x, y, rects) for _, x, y in elsewhere)
    if page.locator("#pc-viewer .pc-hl-strong").count():  # the sentence the answer rests on
        strong = highlight_rects(page, "#pc-viewer .pc-hl-strong")
        assert all(any(covered((r[0] + r[2]) / 2, (r[1] + r[3]) / 2, [b]) for b in rects)
                   for r in strong)
    page.locator("#pc-next").click()
    page.wait_for_function(VIEWER_READY, arg=number + 1)
    assert page.locator("#pc-page-label").inner_text() == f"Page {number + 1} of {paper.pages}"
    shot(page, "10-viewer-next-page")
    width = page.locator("#pc-viewer .pc-page").bounding_box()["width"]
    page.locator("#pc-zoom-in").click()
    page.wait_for_function(VIEWER_READY, arg=number + 1)
    assert page.locator("#pc-viewer .pc-page").bounding_box()["width"] > width * 1.2
    page.locator("#pc-prev").click()
    page.wait_for_function(VIEWER_READY, arg=number)
    href = page.locator("#pc-open-pdf").get_attribute("href") or ""
    assert href.endswith(f"#page={number}")
    reply = page.request.get(f"{viewer_app.url}/{href.split('#')[0]}")
    assert reply.status == 200 and reply.body() == pdf.read_bytes()
    for bad in ("paperchat/pdf?paper=../../etc/passwd", "paperchat/pdf?paper=%2e%2e%2fsecret",
                "paperchat/page?paper=/etc/passwd&n=1"):
        assert page.request.get(f"{viewer_app.url}/{bad}").status == 404


def test_export_lists_every_reference_and_reload_keeps_the_conversation(
        viewer_app: RunningApp, context: Any) -> None:
    page = open_chat(context, viewer_app.url)
    ask(page, QUESTION)
    wait_answers(page, 1)
    cited = {c.get_attribute("id") for c in page.locator("#sources .pc-card[open]").all()}
    with page.expect_download() as done:
        page.locator("#download-md").click()
    md = Path(done.value.path()).read_text()
    titles = page.locator("#sources .pc-card[open] .pc-title").all_inner_texts()
    refs = re.findall(r"^\[(\d+)\] .*\*(.+)\*\. (?:arXiv:\S+|file \S+), p\. \d+\.$", md,
                      flags=re.MULTILINE)
    assert {f"src-0-{n}" for n, _ in refs} == cited  # every cited reference, no other
    assert sorted(t for _, t in refs) == sorted(titles)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=viewer_app.url)
    page.locator("#copy-md").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == md
    if cited:
        with page.expect_download() as done:
            page.locator("#bibtex").click()
        parsed = bibtexparser.parse_string(Path(done.value.path()).read_text())
        assert not parsed.failed_blocks
        assert {e.fields_dict["title"].value for e in parsed.entries} == set(titles)
    page.reload()
    page.locator("#question textarea").wait_for()
    page.wait_for_function("() => document.querySelectorAll('#chatbot .pc-timings').length == 1")
    assert page.locator("#sources .pc-card").count() >= len(cited)
    shot(page, "11-reloaded")
    key = persist.STORAGE_KEY
    kept = page.evaluate("k => localStorage.getItem(k)", key)
    assert kept, "the conversation is kept in the browser"
    page.locator("#new-chat").click()
    page.wait_for_function("() => !document.querySelector('#chatbot .pc-timings')")
    # the emptied copy is written after the chat is cleared: reload once it is
    page.wait_for_function("([k, v]) => localStorage.getItem(k) !== v", arg=[key, kept])
    page.reload()
    page.locator("#question textarea").wait_for()
    page.wait_for_timeout(1500)  # the restore runs on load: it must find nothing
    assert page.locator("#chatbot .pc-timings").count() == 0


def test_an_uploaded_pdf_citation_opens_its_page_offline(pages_library: Settings, llm_url: str,
                                                         browser: Any, tmp_path: Path) -> None:
    settings = copy_library(pages_library, tmp_path / "data",
                            llm={"base_url": llm_url, "temperature": 0.0,
                                 "max_tokens": MAX_TOKENS})
    with running_app(settings) as app:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            app.url) else route.abort())
        try:
            page = open_chat(ctx, app.url)
            page.get_by_role("tab", name="Library").click()
            page.locator("#upload input[type=file]").set_input_files(
                {"name": "My GPT notes.pdf", "mimeType": "application/pdf",
                 "buffer": (CORPUS_PDFS / "gpt1.pdf").read_bytes()})
            page.locator("#library-status").get_by_text("ingested").wait_for(timeout=240_000)
            page.get_by_role("tab", name="Chat").click()
            page.locator("#chat-settings").get_by_text("Settings").click()
            page.locator("#papers input").click()
            notes = f"My_GPT_notes-{content_digest(CORPUS_PDFS / 'gpt1.pdf')}"
            page.get_by_role("option", name=re.compile(rf"\[{notes}\]")).click()
            page.keyboard.press("Escape")
            ask(page, "What does source [1] say about generative pre-training?")
            wait_answers(page, 1)
            card, number = open_first_citation(page)
            assert page.locator(f"#{card}").get_attribute("data-paper") == notes
            assert page.locator("#pc-viewer .pc-hl").count() > 0
            assert "no arXiv" not in page.locator(f"#{card} .pc-links").inner_text()
            assert page.locator(f"#{card} a.pc-open-pdf").get_attribute("href") == \
                f"paperchat/pdf?paper={notes}#page={number}"
            shot(page, "12-viewer-uploaded-pdf")
        finally:
            ctx.close()
