"""Unit tests of the chat UI's pure parts: citation links, the highlighted supporting
sentence, the abstention notice, upload storage and the bind/auth rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError, IngestError, PdfError, SourceNotFoundError
from core.settings import UISettings
from core.types import Answer, Chunk, Citation, Hit, Paper
from rag.citations import resolve_sources
from tests.helpers import CORPUS_PDFS, REPO, make_settings
from ui import render
from ui.app import is_loopback, parse_auth
from ui.chat import Turn, history, stop_streaming, to_messages
from ui.library import arxiv_items
from ui.uploads import content_digest, safe_name, save_upload

PASSAGE = ("The Transformer follows this overall architecture. The encoder is composed of a "
           "stack of N = 6 identical layers. Each layer has two sub-layers.")


def citation(n: int = 1, text: str = PASSAGE) -> Citation:
    return Citation(n=n, paper_id="1706.03762", title="Attention Is All You Need", page=3,
                    text=text, url="https://arxiv.org/abs/1706.03762",
                    pdf_url="https://arxiv.org/pdf/1706.03762#page=3",
                    authors=("Ashish Vaswani", "Noam Shazeer"), year=2017)


def test_supporting_sentence_is_the_one_sharing_most_words() -> None:
    claim = "The encoder is a stack of 6 identical layers [1]."
    a, b = render.supporting_span(PASSAGE, claim) or (0, 0)
    assert PASSAGE[a:b] == "The encoder is composed of a stack of N = 6 identical layers."
    html = render.highlighted(PASSAGE, claim)
    assert "<mark class='pc-support'>The encoder is composed" in html
    assert render.supporting_span(PASSAGE, "unrelated words entirely") is None


def test_pdf_headings_and_bullets_split_sentences() -> None:
    passage = ("3.2.3 Applications of Attention in our Model\nThe Transformer uses multi-head "
               "attention in three different ways:\n• In encoder-decoder attention layers, the "
               "queries come from the\nprevious decoder layer.")
    a, b = render.supporting_span(passage, "Queries come from the previous decoder layer [1].")
    assert passage[a:b] == ("• In encoder-decoder attention layers, the queries come from the\n"
                            "previous decoder layer.")


def test_citing_sentences_pick_the_sentences_with_that_number() -> None:
    text = "Six layers are stacked [1]. Heads are eight [2, 3]. Dropout is used [1-2]."
    assert render.citing_sentences(text, 1) == "Six layers are stacked [1]. Dropout is used [1-2]."
    assert render.citing_sentences(text, 3) == "Heads are eight [2, 3]."


def test_answer_links_each_valid_citation_to_its_card_and_escapes_text() -> None:
    answer = Answer(question="q", answer="Six <b>layers</b> [1]. Also [1, 2].", abstained=False,
                    citations=[citation(1)])
    html = render.answer_html(answer, turn=4)
    assert html.count("href='#src-4-1'") == 2
    assert "src-4-2" not in html  # [2] has no citation: plain text, no link
    assert "&lt;b&gt;layers" in html and "<b>layers" not in html


def test_abstention_is_a_distinct_notice() -> None:
    answer = Answer(question="q", answer="I cannot answer from the library.", abstained=True,
                    abstain_reason="retrieval")
    html = render.answer_html(answer, 0)
    assert "pc-abstain" in html and "pc-cite" not in html
    assert "No passage in the library is close enough" in html


def test_source_card_has_metadata_links_and_highlight() -> None:
    answer = Answer(question="How many layers?", answer="The encoder has 6 identical layers [1].",
                    abstained=False, citations=[citation(1)])
    html = render.sources_html(answer, 2)
    card = re.search(r"<details class='pc-card' id='src-2-1'.*?</details>", html)
    assert card is not None
    for part in ("Attention Is All You Need", "Ashish Vaswani", "2017", "page 3",
                 "https://arxiv.org/abs/1706.03762", "https://arxiv.org/pdf/1706.03762#page=3",
                 "<mark class='pc-support'>"):
        assert part in card.group(0)


def test_uncited_answer_lists_the_passages_given() -> None:
    chunk = Chunk(paper_id="p1", ordinal=0, text="Some passage.", page_start=2, page_end=2,
                  char_start=0, char_end=13, id=7)
    hit = Hit(chunk=chunk, paper_title="Paper One", paper_year=2020, score=1.0)
    answer = Answer(question="q", answer="An answer without markers.", abstained=False,
                    hits=[hit], sources=resolve_sources([hit]))
    html = render.sources_html(answer, 0)
    assert "cites none of the passages" in html and "id='src-0-1'" in html
    assert "cites no passage" in render.answer_html(answer, 0)


def test_uncited_cards_and_library_links_follow_the_configured_arxiv_host() -> None:
    from dataclasses import replace

    from ui.library import paper_link

    chunk = Chunk(paper_id="1706.03762", ordinal=0, text="Some passage.", page_start=5,
                  page_end=5, char_start=0, char_end=13, id=7)
    arxiv = Hit(chunk=chunk, paper_title="Attention", paper_year=2017, score=1.0,
                arxiv_id="1706.03762")
    gpt1 = Hit(chunk=replace(chunk, paper_id="gpt1", page_start=2), paper_title="GPT", score=0.5,
               paper_year=2018, pdf_url="https://cdn.openai.com/gpt1.pdf")
    answer = Answer(question="q", answer="No markers here.", abstained=False, hits=[arxiv, gpt1],
                    sources=resolve_sources([arxiv, gpt1], "https://mirror.example/pdf"))
    html = render.sources_html(answer, 0)
    assert "https://mirror.example/pdf/1706.03762#page=5" in html
    assert "https://mirror.example/abs/1706.03762" in html
    assert "https://cdn.openai.com/gpt1.pdf#page=2" in html and "arxiv.org" not in html
    settings = make_settings(Path("/nonexistent"))
    paper = Paper(id="gpt1", title="GPT", authors=(), year=2018, abstract="", categories=(),
                  version=None, arxiv_id=None, pdf_url="https://cdn.openai.com/gpt1.pdf",
                  source="gpt1.pdf", content_hash="0", pages=12)
    assert paper_link(paper, settings.ingest.arxiv_pdf_url) == "[PDF](https://cdn.openai.com/gpt1.pdf)"
    on_arxiv = replace(paper, id="1706.03762", arxiv_id="1706.03762", pdf_url=None)
    assert paper_link(on_arxiv, "https://mirror.example/pdf") == \
        "[1706.03762](https://mirror.example/abs/1706.03762)"


def test_timings_show_the_tokens_used_out_of_the_request_limit() -> None:
    answer = Answer(question="q", answer="a", abstained=False, model="m", tokens=12,
                    max_tokens=1325)
    assert "12 of at most 1325 tokens" in render.timings_html(answer)
    retrieval_only = Answer(question="q", answer="a", abstained=True)  # no model call
    assert "tokens" not in render.timings_html(retrieval_only)


def test_plain_text_copy_lists_references() -> None:
    answer = Answer(question="q", answer="Six layers [1].", abstained=False,
                    citations=[citation(1)])
    text = render.plain_text(answer)
    assert text.startswith("Six layers [1].")
    assert "[1] Attention Is All You Need (2017), p. 3. https://arxiv.org/pdf/1706.03762#page=3" \
        in text


@pytest.mark.parametrize("name, expected", [
    ("../../evil.pdf", "evil.pdf"), ("..\\..\\evil.pdf", "evil.pdf"), ("/etc/passwd", "passwd.pdf"),
    ("my paper (v2).PDF", "my_paper_v2.pdf"), ("..", "upload.pdf"), ("論文.pdf", "upload.pdf"),
])
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_upload_is_stored_inside_the_data_dir(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    dest = save_upload(CORPUS_PDFS / "gpt1.pdf", "../../evil.pdf", settings)
    digest = content_digest(CORPUS_PDFS / "gpt1.pdf")
    assert dest == (tmp_path / "data" / "uploads" / f"evil-{digest}.pdf").resolve()
    assert dest.read_bytes() == (CORPUS_PDFS / "gpt1.pdf").read_bytes()
    assert not (tmp_path / "evil.pdf").exists() and not (tmp_path.parent / "evil.pdf").exists()


def test_upload_size_limit_and_pdf_check(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ui={"max_upload_mb": 0.1})
    with pytest.raises(IngestError, match=r"uploads are limited to 0.1 MiB"):
        save_upload(CORPUS_PDFS / "gpt1.pdf", "gpt1.pdf", settings)
    fake = tmp_path / "notes.pdf"
    fake.write_text("just text")
    with pytest.raises(PdfError, match="not a PDF"):
        save_upload(fake, "notes.pdf", settings)
    assert not any((tmp_path / "data" / "uploads").glob("*.pdf"))


def test_bind_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert parse_auth(UISettings()) is None
    with pytest.raises(ConfigError, match="without a password"):
        parse_auth(UISettings(host="0.0.0.0"))
    assert parse_auth(UISettings(host="0.0.0.0", auth="ann:s3:cret")) == ("ann", "s3:cret")
    with pytest.raises(ConfigError, match="user:password"):
        parse_auth(UISettings(auth="nopassword"))


def test_browser_may_name_only_arxiv_papers() -> None:
    assert arxiv_items("1706.03762, https://arxiv.org/abs/2106.09685v2") == [
        "1706.03762", "https://arxiv.org/abs/2106.09685v2"]
    with pytest.raises(SourceNotFoundError, match="Not an arXiv id: /etc/hosts"):
        arxiv_items("1706.03762 /etc/hosts")


def test_only_answered_turns_are_history_and_stopped_ones_are_marked() -> None:
    turns = [Turn("q1", "a1 [1].", "<p>a1</p>", "<div>s1</div>"),
             Turn("q2", "", "<div class='pc-error'>down</div>", "", "failed"),
             Turn("q3", "partial", "<p>partial</p>", "", "streaming")]
    assert history(turns) == [("q1", "a1 [1].")]
    assert "(stopped)" not in to_messages(turns)[-1]["content"]  # still streaming
    stopped = stop_streaming(turns)
    messages = to_messages(stopped)
    assert [t.status for t in stopped] == ["done", "failed", "stopped"]
    assert messages[-1]["content"].endswith("(stopped)</small>")
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3


def test_cli_refuses_an_open_bind_without_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAPERCHAT_", "GRADIO_"))}
    done = subprocess.run([str(REPO / ".venv" / "bin" / "paperchat"), "--data-dir",
                           str(tmp_path / "data"), "chat", "--host", "0.0.0.0"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: The chat would listen on 0.0.0.0 without a password. Set ui.auth "
        "(PAPERCHAT_UI_AUTH='user:password') or bind ui.host to 127.0.0.1.")


def test_a_share_link_needs_a_password(tmp_path: Path) -> None:
    """ui.share publishes upload and remove on a public URL: refused without ui.auth, from
    the settings check and from `paperchat chat` (before any model is loaded)."""
    with pytest.raises(ConfigError, match="public link without a password"):
        parse_auth(UISettings(share=True))
    assert parse_auth(UISettings(share=True, auth="ann:pw")) == ("ann", "pw")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAPERCHAT_", "GRADIO_"))}
    env["PAPERCHAT_UI_SHARE"] = "true"
    done = subprocess.run([str(REPO / ".venv" / "bin" / "paperchat"), "--data-dir",
                           str(tmp_path / "data"), "chat"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ui.share" in lines[0] and "ui.auth" in lines[0]


def test_the_app_switches_gradio_analytics_off_itself() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_")}
    code = ("import ui.app, gradio.analytics as a, os; "
            "print(os.environ['GRADIO_ANALYTICS_ENABLED'], a.analytics_enabled())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, check=True)
    assert done.stdout.split() == ["False", "False"]
