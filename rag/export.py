"""An answer exported with its references: Markdown (the answer, then each cited passage
numbered as in the answer: title, authors, year, arXiv id or file, page, the quoted
passage), BibTeX entries of the cited papers (from the stored metadata: no network), plain
text and JSON. The terminal (`paperchat ask --format`) and the chat's export buttons use it.

``papers`` (paper id -> :class:`Paper`, from the library) adds what the answer does not
carry (the local file's name, the arXiv category and version); without it the answer's
own passages suffice.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from core.text import reflow
from core.types import Answer, Citation, Paper

Format = Literal["text", "markdown", "bibtex", "json"]
FORMATS: tuple[str, ...] = ("text", "markdown", "bibtex", "json")
_BIB_SPECIAL = re.compile(r"([{}&%$#_\\])")
_VERBATIM = {"url", "eprint", "archivePrefix", "primaryClass"}  # identifiers: not TeX text
_STOP = {"a", "an", "the", "on", "of", "in", "for", "to", "and", "with", "via", "is", "are"}


def _arxiv_id(answer: Answer, c: Citation, papers: Mapping[str, Paper]) -> str | None:
    paper = papers.get(c.paper_id)
    if paper is not None:
        return paper.arxiv_id
    hit = answer.hits[c.n - 1] if 0 < c.n <= len(answer.hits) else None
    if hit is not None and hit.chunk.paper_id == c.paper_id:
        return hit.arxiv_id
    return None


def _file_name(c: Citation, papers: Mapping[str, Paper]) -> str:
    paper = papers.get(c.paper_id)
    if paper is not None and paper.source and "://" not in paper.source:
        return Path(paper.source).name
    return f"{c.paper_id}.pdf"


def _authors(authors: tuple[str, ...], most: int = 6) -> str:
    if not authors:
        return "unknown authors"
    shown = ", ".join(authors[:most])
    return shown + (" et al." if len(authors) > most else "")


def reference_line(answer: Answer, c: Citation, papers: Mapping[str, Paper]) -> str:
    """``[n] Authors (year). *Title*. arXiv:ID (or file NAME), p. N.``"""
    arxiv = _arxiv_id(answer, c, papers)
    where = f"arXiv:{arxiv}" if arxiv else f"file {_file_name(c, papers)}"
    return (f"[{c.n}] {_authors(c.authors)} ({c.year or 'n.d.'}). *{_md(c.title)}*. "
            f"{where}, p. {c.page}.")


def _md(text: str) -> str:
    """Text safe inside Markdown emphasis and lists."""
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", " ".join(text.split()))


def markdown(answer: Answer, papers: Mapping[str, Paper] | None = None) -> str:
    """The answer and its numbered references, each with its quoted passage."""
    papers = papers or {}
    lines = [f"**Question:** {_md(answer.question)}", "", answer.answer.strip(), ""]
    if not answer.citations:
        lines.append("*No passage of the library is cited.*")
        return "\n".join(lines) + "\n"
    lines += ["**References**", ""]
    for c in sorted(answer.citations, key=lambda c: c.n):
        lines.append(reference_line(answer, c, papers))
        lines.append("")
        lines.append("> " + _md(reflow(c.text)))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def text(answer: Answer) -> str:
    """The answer and one line a reference (what the chat's plain copy gives)."""
    lines = [answer.answer.strip()]
    if answer.citations:
        lines.append("")
    for c in sorted(answer.citations, key=lambda c: c.n):
        link = c.pdf_url or c.url or c.paper_id
        lines.append(f"[{c.n}] {c.title} ({c.year or 'n.d.'}), p. {c.page}. {link}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ BibTeX


def _bib_escape(value: str) -> str:
    return _BIB_SPECIAL.sub(r"\\\1", " ".join(value.split()))


def _ascii_word(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain.lower())


def _key(c: Citation, arxiv: str | None) -> str:
    """``vaswani2017attention``: first author's surname, year, first title word."""
    surname = _ascii_word(c.authors[0].split()[-1]) if c.authors and c.authors[0].split() else ""
    words = [_ascii_word(w) for w in c.title.split()]
    first = next((w for w in words if w and w not in _STOP), "")
    year = str(c.year or "")
    key = f"{surname}{year}{first}" or _ascii_word(arxiv or c.paper_id) or "paper"
    return key if key[0].isalpha() else f"p{key}"


def bib_entry(c: Citation, key: str, arxiv: str | None, paper: Paper | None,
              file_name: str) -> str:
    fields: list[tuple[str, str]] = [("title", c.title)]
    if c.authors:
        fields.append(("author", " and ".join(c.authors)))
    if c.year:
        fields.append(("year", str(c.year)))
    if arxiv:
        fields += [("eprint", arxiv), ("archivePrefix", "arXiv")]
        if paper is not None and paper.categories:
            fields.append(("primaryClass", paper.categories[0]))
        fields.append(("url", f"https://arxiv.org/abs/{arxiv}"))
    elif paper is not None and paper.pdf_url:
        fields.append(("url", paper.pdf_url.replace("{", "%7B").replace("}", "%7D")))
    else:
        fields.append(("note", f"Local PDF: {file_name}"))
    body = ",\n".join(f"  {name} = {{{value if name in _VERBATIM else _bib_escape(value)}}}"
                      for name, value in fields)
    return f"@misc{{{key},\n{body}\n}}"


def bibtex(answer: Answer, papers: Mapping[str, Paper] | None = None) -> str:
    """One ``@misc`` entry per cited paper (first citation's metadata), unique keys."""
    papers = papers or {}
    entries: list[str] = []
    seen_papers: set[str] = set()
    keys: set[str] = set()
    for c in sorted(answer.citations, key=lambda c: c.n):
        if c.paper_id in seen_papers:
            continue
        seen_papers.add(c.paper_id)
        arxiv = _arxiv_id(answer, c, papers)
        key = base = _key(c, arxiv)
        suffix = iter("bcdefghijklmnopqrstuvwxyz")
        while key in keys:
            key = base + next(suffix, "z")
        keys.add(key)
        entries.append(bib_entry(c, key, arxiv, papers.get(c.paper_id), _file_name(c, papers)))
    return "\n\n".join(entries) + ("\n" if entries else "")


def render(answer: Answer, fmt: str, papers: Mapping[str, Paper] | None = None) -> str:
    """The answer in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "markdown":
        return markdown(answer, papers)
    if fmt == "bibtex":
        return bibtex(answer, papers)
    if fmt == "json":
        return json.dumps(answer.to_dict(), indent=2, ensure_ascii=False) + "\n"
    return text(answer)
