"""The chat in a real browser: Debian's Chromium driven by Playwright against the app served
on a free loopback port, over a library of real corpus PDFs built by the real ingest, with
the real vLLM server. Screenshots of each step go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.helpers import CORPUS_PDFS, REPO, copy_library, free_port, ingest_into, make_settings
from tests.ui_helpers import (
    ANSWER_TIMEOUT_MS,
    CHROMIUM,
    WATCH_STREAMING,
    RunningApp,
    answers,
    ask,
    open_chat,
    running_app,
    served_model_path,
    shot,
    streamed_lengths,
    wait_answers,
)
from ui.uploads import content_digest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.llm]
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)

PAPERS = ("1706.03762", "2106.09685", "1810.04805")  # Transformer, LoRA, BERT
CITE_QUESTION = "What does source [1] say about the Transformer encoder layers?"
NONSENSE = "What is the best recipe for banana bread with walnuts?"


@pytest.fixture(scope="module")
def ui_library(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A library of three real papers built with the real ingest (read-only here)."""
    settings = make_settings(tmp_path_factory.mktemp("ui") / "data")
    assert ingest_into(settings, [str(CORPUS_PDFS / f"{p}.pdf") for p in PAPERS]) == 0
    return settings


@pytest.fixture(scope="module")
def chat_app(ui_library: Settings, llm_url: str) -> Iterator[RunningApp]:
    settings = ui_library.model_copy(deep=True)
    settings.llm.base_url, settings.llm.temperature = llm_url, 0.0
    with running_app(settings) as app:
        yield app


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield ctx
    ctx.close()


def cards(page: Any) -> list[dict[str, str]]:
    return list(page.evaluate("""() => [...document.querySelectorAll('#sources .pc-card')]
        .map(c => ({id: c.id, paper: c.dataset.paper, page: c.dataset.page,
                    text: c.innerText}))"""))


def test_question_streams_and_cites_the_right_paper_and_page(chat_app: RunningApp,
                                                             context: Any) -> None:
    given = chat_app.engine.retriever.search(CITE_QUESTION).hits  # what the model is shown
    given_at = {(h.chunk.paper_id, str(h.chunk.page_start)) for h in given}
    page = open_chat(context, chat_app.url)
    page.locator("#health").get_by_text("server up").wait_for()
    page.evaluate(WATCH_STREAMING)
    ask(page, CITE_QUESTION)
    page.locator("#chatbot .pc-streaming").first.wait_for(timeout=120_000)
    shot(page, "1-chat-streaming")
    assert "(stopped)" not in page.locator("#chatbot").inner_text()
    wait_answers(page, 1)
    lengths = streamed_lengths(page)
    assert lengths and max(lengths) > min(lengths), f"no growing partial answer: {lengths}"
    links = page.locator("#chatbot a.pc-cite")
    assert links.count() >= 1, page.locator("#chatbot").inner_text()
    shown = cards(page)
    assert shown and all((c["paper"], c["page"]) in given_at for c in shown), (shown, given_at)
    first = shown[0]  # the card of the lowest number cited: passage n of the prompt
    n = int(first["id"].rsplit("-", 1)[1])
    hit = given[n - 1]
    assert first["id"] == f"src-0-{n}" and first["paper"] == hit.chunk.paper_id
    paper = chat_app.engine.library.paper(hit.chunk.paper_id)
    assert paper is not None and paper.title in first["text"]
    assert f"page {hit.chunk.page_start}" in first["text"]
    pdf_base = chat_app.settings.ingest.arxiv_pdf_url  # links follow the configured arXiv host
    assert f"{pdf_base}/{hit.chunk.paper_id}#page={hit.chunk.page_start}" in \
        page.locator(f"#src-0-{n} .pc-links").inner_html()
    card = (links.first.get_attribute("href") or "").split("#")[-1]  # src-0-<n>
    links.first.click()  # the citation brings up its card
    page.locator(f"#{card}.pc-active[open]").wait_for()
    assert page.locator(f"#{card} mark.pc-support").count() == 1
    shot(page, "1-chat-cited-source")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=chat_app.url)
    page.locator("#copy-answer").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert f"[{n}]" in copied and paper.title in copied and "<" not in copied


def test_follow_up_uses_the_conversation(chat_app: RunningApp, context: Any) -> None:
    page = open_chat(context, chat_app.url)
    ask(page, CITE_QUESTION)
    wait_answers(page, 1)
    ask(page, "And how many attention heads does it use?")
    wait_answers(page, 2)
    query = page.locator("#sources .pc-turn[data-turn='1'] .pc-query")
    assert query.count() == 1  # searched for a standalone query, not the bare follow-up
    shot(page, "2-chat-follow-up")
    page.locator("#new-chat").click()
    page.wait_for_function("() => !document.querySelector('#chatbot .pc-timings')")
    assert page.locator("#sources .pc-card").count() == 0


def test_nonsense_question_shows_the_abstention(chat_app: RunningApp, context: Any) -> None:
    page = open_chat(context, chat_app.url)
    ask(page, NONSENSE)
    notice = page.locator("#chatbot .pc-abstain")
    notice.wait_for(timeout=120_000)
    assert "I cannot answer from the library." in notice.inner_text()
    assert page.locator("#chatbot a.pc-cite").count() == 0
    ask(page, "バナナブレッドのおすすめのレシピを教えてください。")  # Japanese, end to end
    page.locator("#chatbot .pc-abstain").nth(1).wait_for(timeout=120_000)
    assert "ライブラリの論文からは答えられません" in page.locator("#chatbot").inner_text()
    shot(page, "3-abstention")


def test_japanese_question_gets_an_answer(chat_app: RunningApp, context: Any) -> None:
    page = open_chat(context, chat_app.url)
    question = "Transformerのエンコーダは何層ですか？"
    ask(page, question)
    wait_answers(page, 1)
    assert question in page.locator("#chatbot").inner_text()
    assert page.locator("#sources .pc-turn .pc-q").first.inner_text() == question
    shot(page, "4-japanese")


def test_settings_limit_passages_and_papers(chat_app: RunningApp, context: Any) -> None:
    page = open_chat(context, chat_app.url)
    page.locator("#chat-settings").get_by_text("Settings").click()
    k = page.locator("#k input[type=number]")
    k.fill("2")
    k.press("Enter")
    page.locator("#papers input").click()
    page.get_by_role("option", name=re.compile(r"LoRA: Low-Rank")).click()
    page.keyboard.press("Escape")
    ask(page, CITE_QUESTION)  # about the Transformer, but only LoRA may be searched
    wait_answers(page, 1)
    shot(page, "4-settings-filter")
    shown = cards(page)
    assert 1 <= len(shown) <= 2 and {c["paper"] for c in shown} == {PAPERS[1]}, shown


def set_max_tokens(page: Any, value: str) -> None:
    box = page.locator("#max-tokens input[type=number]")
    box.fill(value)
    box.press("Enter")
    sync_api.expect(page.locator("#max-tokens input[type=range]")).to_have_value(value)


def test_temperature_and_max_tokens_reach_the_model(chat_app: RunningApp,
                                                    context: Any) -> None:
    page = open_chat(context, chat_app.url)
    page.locator("#chat-settings").get_by_text("Settings").click()
    temperature = page.locator("#temperature input[type=number]")
    temperature.fill("1.5")  # the app's own default is 0: the same question, the same answer
    temperature.press("Enter")
    set_max_tokens(page, "16")
    for n in (1, 2):
        ask(page, CITE_QUESTION)
        wait_answers(page, n)
    for used in page.locator("#chatbot .pc-tokens").all_inner_texts():
        count, limit = map(int, re.findall(r"\d+", used))
        assert limit == 16 and 0 < count <= 16, used  # a short answer
    first, second = page.locator("#chatbot .pc-answer, #chatbot .pc-abstain").all_inner_texts()
    assert first != second, "sampled at temperature 1.5, two answers differ"
    shot(page, "9-temperature-max-tokens-16")
    # The slider's maximum on a 2048-token model: the request is lowered to leave the
    # passages their room, so the server accepts it and the answer streams (no error).
    largest = page.locator("#max-tokens input[type=range]").get_attribute("max") or ""
    assert int(largest) >= chat_app.engine.llm.max_model_len()
    set_max_tokens(page, largest)
    ask(page, CITE_QUESTION)
    page.locator("#chatbot .pc-streaming").first.wait_for(timeout=120_000)
    shot(page, "9-max-tokens-largest-streaming")
    page.locator("#stop").click()  # accepted is what counts: no need to wait for it all
    page.wait_for_function(
        "() => document.querySelector('#chatbot').innerText.includes('(stopped)')"
        " || document.querySelectorAll('#chatbot .pc-timings').length >= 3",
        timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#chatbot .pc-error").count() == 0
    assert not page.locator(".toast-body").all_inner_texts()


def test_stop_keeps_the_partial_answer_and_chat_goes_on(chat_app: RunningApp,
                                                        context: Any) -> None:
    page = open_chat(context, chat_app.url)
    ask(page, "What does source [1] say about LoRA?")  # the small model rambles here
    page.locator("#chatbot .pc-streaming").first.wait_for(timeout=120_000)
    page.locator("#stop").click()
    page.locator("#chatbot").get_by_text("(stopped)").wait_for()
    assert answers(page).count() == 0
    shot(page, "5-stopped")
    ask(page, "What does source [1] say about LoRA?")
    page.locator("#chatbot .pc-streaming").first.wait_for(timeout=120_000)
    page.locator("#new-chat").click()  # mid-answer: the chat empties and stays empty
    page.locator("#chatbot").get_by_text("Ask about the papers in the library").wait_for()
    ask(page, NONSENSE)
    page.locator("#chatbot .pc-abstain").wait_for(timeout=120_000)
    assert page.locator("#chatbot [data-testid=user]").count() == 1
    assert "(stopped)" not in page.locator("#chatbot").inner_text()


def test_uploaded_pdf_appears_in_the_library(ui_library: Settings, llm_url: str,
                                             context: Any, tmp_path: Path) -> None:
    settings = copy_library(ui_library, tmp_path / "data", llm={"base_url": llm_url})
    with running_app(settings) as app:
        page = open_chat(context, app.url)
        page.get_by_role("tab", name="Library").click()
        table = page.locator("#library-table")
        table.get_by_text("LoRA: Low-Rank Adaptation").first.wait_for()
        assert "Improving Language Understanding" not in table.inner_text()
        page.locator("#upload input[type=file]").set_input_files(
            {"name": "../../evil.pdf", "mimeType": "application/pdf",
             "buffer": (CORPUS_PDFS / "gpt1.pdf").read_bytes()})
        progress = page.locator("#library-table .progress-level").get_by_text(
            re.compile(r"(download|extract|embed|indexing)"))
        progress.first.wait_for(timeout=120_000)  # the ingest's progress, shown in the page
        shot(page, "6-library-upload-progress")
        page.locator("#library-status").get_by_text("ingested").wait_for(timeout=240_000)
        evil = f"evil-{content_digest(CORPUS_PDFS / 'gpt1.pdf')}"  # named by its content
        # the grid, not the hidden sizing row that holds each column's longest text
        table.get_by_role("gridcell").get_by_text(evil).wait_for()
        shot(page, "6-library-upload")
        stored = list((settings.data_dir / "uploads").iterdir())
        assert [p.name for p in stored] == [f"{evil}.pdf"]
        assert not (settings.data_dir.parent / "evil.pdf").exists()
        assert app.engine.library.paper(evil) is not None
        page.locator("#remove-papers input").click()
        page.get_by_role("option", name=re.compile(rf"\[{evil}\]")).click()
        page.locator("#remove-button").click()
        page.locator("#library-status").get_by_text(f"Removed {evil}").wait_for()
        assert app.engine.library.paper(evil) is None


def test_add_by_arxiv_id_and_search(ui_library: Settings, llm_url: str, context: Any,
                                    tmp_path: Path, arxiv_stub: Any) -> None:
    settings = copy_library(ui_library, tmp_path / "data", llm={"base_url": llm_url},
                            ingest=arxiv_stub.ingest_settings())
    with running_app(settings) as app:
        page = open_chat(context, app.url)
        page.get_by_role("tab", name="Library").click()
        table, status = page.locator("#library-table"), page.locator("#library-status")
        page.locator("#add-ids textarea").fill("1707.06347 /etc/hosts")
        page.locator("#add-ids-button").click()  # a server path is refused, nothing added
        page.locator(".toast-body").get_by_text("Not an arXiv id: /etc/hosts.").wait_for()
        page.locator("#add-ids textarea").fill("1707.06347")
        page.locator("#add-ids-button").click()
        status.get_by_text("ingested").wait_for(timeout=240_000)
        table.get_by_text("Proximal Policy Optimization Algorithms").wait_for()
        page.locator("#search textarea").fill("Pythia")
        page.locator("#search-button").click()
        table.get_by_text("Pythia: A Suite for Analyzing").wait_for(timeout=240_000)
        shot(page, "6-library-arxiv")
        assert {"1707.06347", "2304.01373"} <= {p.id for p in app.engine.library.papers()}
        page.get_by_role("tab", name="Chat").click()  # the paper filter knows the new papers
        page.locator("#chat-settings").get_by_text("Settings").click()
        page.locator("#papers input").click()
        page.get_by_role("option", name=re.compile("Proximal Policy")).wait_for()


def test_basic_auth_guards_the_chat(ui_library: Settings, llm_url: str, context: Any) -> None:
    settings = ui_library.model_copy(deep=True)
    settings.llm.base_url, settings.ui.auth = llm_url, "ann:s3cret"
    with running_app(settings) as app:
        page = context.new_page()
        page.goto(app.url)
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect Credentials").wait_for()
        assert page.locator("#question").count() == 0
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("s3cret")
        page.get_by_role("button", name="Login").click()
        page.locator("#question textarea").wait_for(timeout=60_000)


def cli_error(settings: Settings, question: str) -> str:
    """What `paperchat ask` prints for the same failure (the wording the page must show)."""
    cmd = [str(REPO / ".venv" / "bin" / "paperchat"), "--data-dir", str(settings.data_dir),
           "--llm-url", settings.llm.base_url, "ask", question]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr
    return done.stderr.strip().splitlines()[-1].removeprefix("error: ")


@pytest.mark.extra_server
def test_model_server_down_then_back(ui_library: Settings, llm_url: str, context: Any) -> None:
    from serve.server import start_server

    port = free_port()
    settings = ui_library.model_copy(deep=True)
    settings.llm.base_url = f"http://127.0.0.1:{port}/v1"
    settings.llm.serve_port, settings.llm.serve_model = port, served_model_path(llm_url)
    settings.llm.temperature = 0.0
    expected = cli_error(settings, CITE_QUESTION)
    assert f"127.0.0.1:{port}" in expected
    with running_app(settings) as app:
        page = open_chat(context, app.url)
        page.locator("#health").get_by_text("is not reachable").wait_for()
        ask(page, CITE_QUESTION)
        page.locator(".toast-body").get_by_text(expected).wait_for(timeout=60_000)
        notice = page.locator("#chatbot .pc-error")
        assert expected in notice.inner_text()  # and inline, where the answer would be
        assert CITE_QUESTION in page.locator("#chatbot").inner_text()
        shot(page, "7-server-down-error")
        page.get_by_role("tab", name="Library").click()  # the page stays usable
        page.locator("#library-table").get_by_text("Attention Is All You Need").wait_for()
        page.get_by_role("tab", name="Chat").click()
        with start_server(settings) as server:
            assert server.url == settings.llm.base_url
            ask(page, CITE_QUESTION)
            wait_answers(page, 1)
            page.locator("#health").get_by_text("server up").wait_for(timeout=60_000)
            shot(page, "7-server-back")
        ask(page, CITE_QUESTION)  # the server died: the error again, the page still up
        errors = page.locator("#chatbot .pc-error")  # the first failure stays in the chat
        sync_api.expect(errors).to_have_count(2, timeout=60_000)
        assert "is not reachable" in errors.nth(1).inner_text() and answers(page).count() == 1
        shot(page, "7-server-gone-again")


def test_four_chats_at_once(chat_app: RunningApp, browser: Any) -> None:
    questions = [CITE_QUESTION, "What does source [1] say about LoRA rank?",
                 "What does source [1] say about BERT pre-training?",
                 "What does source [1] say about the attention heads?"]
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in questions]
    try:
        pages = [open_chat(ctx, chat_app.url) for ctx in contexts]
        for page in pages:
            page.evaluate(TIMELINE)
        for page, question in zip(pages, questions, strict=True):
            ask(page, question)
        for i, page in enumerate(pages):
            wait_answers(page, 1)
            shot(page, f"8-concurrent-{i + 1}")
        marks = [page.evaluate("() => window.__pcTimeline") for page in pages]
        assert all(m["stream"] is not None and m["done"] is not None for m in marks), marks
        # served side by side, not queued one after another: when a chat starts streaming,
        # another is still streaming (an answer can be short, so not all four need overlap)
        at_once = max(sum(o["stream"] <= m["stream"] < o["done"] for o in marks)
                      for m in marks)
        assert at_once >= 2, marks
    finally:
        for ctx in contexts:
            ctx.close()


TIMELINE = """() => {
  window.__pcTimeline = {stream: null, done: null};
  new MutationObserver(() => {
    const t = window.__pcTimeline, now = Date.now();
    if (t.stream === null && document.querySelector('#chatbot .pc-streaming')) t.stream = now;
    if (t.done === null && document.querySelector('#chatbot .pc-timings')) t.done = now;
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
