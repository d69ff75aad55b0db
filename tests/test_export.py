"""Exporting an answer (rag/export.py): Markdown lists every cited reference with its
passage, BibTeX parses with a real BibTeX parser, `paperchat ask --format` prints them; the
conversation kept in the browser survives a round trip (ui/persist.py); the sources panel
carries what the viewer and the export buttons need (ui/render.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import bibtexparser
import pytest

from core.types import Answer, Chunk, Citation, Hit, Paper, Quote, SentenceCheck
from rag import export
from tests.helpers import CORPUS_PDFS, REPO, ingest_into, make_settings
from ui import persist, render
from ui.chat import Turn
from ui.routes import parse_spans

PASSAGE = ("The Transformer follows this overall architecture. The encoder is composed of a "
           "stack of N = 6 identical layers. Each layer has two sub-layers.")


def hit(paper_id: str, arxiv_id: str | None, chunk_id: int, page: int) -> Hit:
    chunk = Chunk(paper_id=paper_id, ordinal=0, text=PASSAGE, page_start=page, page_end=page,
                  char_start=0, char_end=len(PASSAGE), id=chunk_id)
    return Hit(chunk=chunk, paper_title=f"Title of {paper_id}", paper_year=2017, score=1.0,
               arxiv_id=arxiv_id, authors=("Ashish Vaswani", "Noam Shazeer"))


def citation(n: int, paper_id: str, title: str, arxiv: bool, authors: tuple[str, ...]) -> Citation:
    return Citation(n=n, paper_id=paper_id, title=title, page=n + 2, text=PASSAGE,
                    url=f"https://arxiv.org/abs/{paper_id}" if arxiv else None,
                    pdf_url=None, chunk_id=10 + n, year=2017 if arxiv else None,
                    authors=authors)


def answer() -> Answer:
    cites = [citation(1, "1706.03762", "Attention Is All You Need", True,
                      ("Ashish Vaswani", "Noam Shazeer", "Łukasz Kaiser")),
             citation(3, "my_notes", "Notes on {braces} & 50% of $costs #1_draft", False, ()),
             citation(4, "1706.03762", "Attention Is All You Need", True, ("Ashish Vaswani",))]
    hits = [hit("1706.03762", "1706.03762", 11, 3), hit("x", None, 12, 4),
            hit("my_notes", None, 13, 5), hit("1706.03762", "1706.03762", 14, 6)]
    return Answer(question="How many layers?", answer="Six layers [1]. Notes agree [3, 4].",
                  abstained=False, citations=cites, hits=hits)


def test_markdown_lists_every_cited_reference_with_its_passage() -> None:
    md = export.markdown(answer())
    assert md.startswith("**Question:** How many layers?")
    assert "Six layers [1]. Notes agree [3, 4]." in md
    refs = re.findall(r"^\[(\d+)\] (.*)$", md, flags=re.MULTILINE)
    assert [n for n, _ in refs] == ["1", "3", "4"]
    first = refs[0][1]
    assert "Ashish Vaswani, Noam Shazeer, Łukasz Kaiser (2017)" in first
    assert "*Attention Is All You Need*" in first and "arXiv:1706.03762, p. 3." in first
    assert "file my_notes.pdf, p. 5." in refs[1][1] and "(n.d.)" in refs[1][1]
    assert md.count("> The Transformer follows this overall architecture.") == 3
    library = {"my_notes": Paper(id="my_notes", title="t", authors=(), year=None, abstract="",
                                 categories=(), version=None, arxiv_id=None, pdf_url=None,
                                 source="/home/ann/papers/My Notes v2.pdf", content_hash="0",
                                 pages=9)}
    assert "file My Notes v2.pdf, p. 5." in export.markdown(answer(), library)
    none = Answer(question="q", answer="I cannot answer from the library.", abstained=True)
    assert "No passage of the library is cited" in export.markdown(none)


def test_bibtex_parses_and_has_one_entry_per_cited_paper() -> None:
    bib = export.bibtex(answer())
    parsed = bibtexparser.parse_string(bib)
    assert not parsed.failed_blocks
    entries = {e.key: e.fields_dict for e in parsed.entries}
    assert list(entries) == ["vaswani2017attention", "notes"]
    transformer = entries["vaswani2017attention"]
    assert transformer["title"].value == "Attention Is All You Need"
    assert transformer["author"].value == "Ashish Vaswani and Noam Shazeer and Łukasz Kaiser"
    assert transformer["eprint"].value == "1706.03762"
    assert transformer["archivePrefix"].value == "arXiv"
    notes = entries["notes"]
    assert notes["title"].value == r"Notes on \{braces\} \& 50\% of \$costs \#1\_draft"
    assert notes["note"].value == r"Local PDF: my\_notes.pdf"
    assert export.bibtex(Answer(question="q", answer="a", abstained=False)) == ""


def test_bibtex_keys_stay_unique() -> None:
    a = answer()
    a.citations[1] = citation(3, "1706.99999", "Attention Is All You Need", True,
                              ("Ashish Vaswani",))
    keys = [e.key for e in bibtexparser.parse_string(export.bibtex(a)).entries]
    assert keys == ["vaswani2017attention", "vaswani2017attentionb"]


def test_sources_panel_carries_the_viewer_and_export_data() -> None:
    a = answer()
    a.sentences = [SentenceCheck(text="Six layers [1].", citations=[1], support="supported",
                                 matches=[Quote(n=1, text="The encoder ...", start=51, end=115)])]
    html = render.sources_html(a, 2)
    card = re.search(r"<details class='pc-card' id='src-2-1'[^>]*>", html)
    assert card is not None
    assert "data-chunk='11'" in card.group(0) and f"data-len='{len(PASSAGE)}'" in card.group(0)
    assert "data-strong='51-115'" in card.group(0)  # the sentence the support check matched
    assert "<mark class='pc-support'>The encoder is composed" in html
    assert "href='paperchat/pdf?paper=1706.03762#page=3'" in html  # the library's copy
    assert "href='https://arxiv.org/abs/1706.03762'" in html  # and arXiv, second
    md = re.search(r"<pre class='pc-export' data-kind='md' hidden>(.*?)</pre>", html, re.S)
    assert md is not None and "[3] unknown authors (n.d.). *Notes on" in md.group(1)
    assert "@misc{vaswani2017attention," in html


def test_span_parameters_are_parsed_strictly() -> None:
    assert parse_spans("12-80, 95-140") == ((12, 80), (95, 140))
    assert parse_spans("5-2,x-9,1-2-3,,../../etc") == ()
    assert len(parse_spans(",".join(["1-2"] * 40))) == 16


def test_the_browser_copy_of_the_conversation_round_trips() -> None:
    turns = [Turn("q1", "a1 [1]", "<p>a1</p>", "<div>s1</div>"),
             Turn("q2", "partial", "<p>p</p>", "", "streaming")]
    saved = persist.save(turns)
    assert [t["status"] for t in saved] == ["done", "stopped"]
    chatbot, sources, back, copy = persist.restore(saved)
    assert [t.question for t in back] == ["q1", "q2"] and copy == "a1 [1]"
    assert chatbot[0] == {"role": "user", "content": "q1"} and "s1" in sources
    junk = [{"question": 1}, "x", {"question": "q", "answer": "a", "html": "h",
                                   "sources": "s", "status": "evil", "extra": 1}]
    assert [(t.question, t.status) for t in persist.load(junk)] == [("q", "stopped")]
    assert persist.load(None) == [] and persist.cleared() == []
    assert len(persist.save([turns[0]] * 50)) == persist.MAX_TURNS


@pytest.mark.slow
@pytest.mark.llm
def test_ask_prints_markdown_and_bibtex(tmp_path: Path, llm_url: str) -> None:
    settings = make_settings(tmp_path / "data")
    assert ingest_into(settings, [str(CORPUS_PDFS / "1706.03762.pdf")]) == 0
    base = [sys.executable, "-m", "paperchat.cli", "--data-dir", str(settings.data_dir),
            "--llm-url", llm_url, "ask", "What does source [1] say about the encoder layers?"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PAPERCHAT_LLM_TEMPERATURE": "0"}
    md = subprocess.run([*base, "--format", "markdown"], capture_output=True, text=True,
                        timeout=600, env=env, check=True).stdout
    head = "**Question:** What does source \\[1\\] say about the encoder layers?"
    assert md.startswith(head), md[:200]
    body, _, refs = md[len(head):].partition("**References**")
    cited = set(re.findall(r"\[(\d+)", body)) | set(re.findall(r", (\d+)\]", body))
    listed = set(re.findall(r"^\[(\d+)\] .*, p\. \d+\.$", refs, flags=re.MULTILINE))
    assert cited == listed  # every number the answer cites has its reference, and no other
    assert ("arXiv:1706.03762" in refs) == bool(listed)
    bib = subprocess.run([*base, "--format", "bibtex"], capture_output=True, text=True,
                         timeout=600, env=env, check=True).stdout
    parsed = bibtexparser.parse_string(bib)
    assert not parsed.failed_blocks
    assert all(e.fields_dict["eprint"].value == "1706.03762" for e in parsed.entries)
