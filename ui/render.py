"""HTML for the chat: answers with clickable [n] citations, the abstention notice, and the
source cards with the supporting sentence highlighted. Pure functions of the typed values.

Card ids are ``src-<turn>-<n>``: citation [n] of answer number <turn> links to its card; a
card's data attributes tell the page viewer (``ui.viewer``) which passage to show. Each
answer's sources section also holds its Markdown and BibTeX export (hidden).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from core.links import app_pdf_url
from core.text import passage_sentences, split_sentences, tokenize
from core.types import Answer, Citation, Quote
from rag import export
from rag.citations import MARKER, expand
from ui.labels import labels_for

ABSTAIN_WHY = {"retrieval": "why_retrieval", "model": "why_model"}  # keys of ui.labels


def card_id(turn: int, n: int) -> str:
    return f"src-{turn}-{n}"


def citing_sentences(answer: str, n: int) -> str:
    """The answer's sentences that cite [n], joined (the claims the passage supports)."""
    out = [s for s in split_sentences(answer)
           if any(n in expand(m.group(1)) for m in MARKER.finditer(s))]
    return " ".join(out)


def supporting_span(passage: str, claim: str) -> tuple[int, int] | None:
    """Offsets of the passage sentence sharing the most words with ``claim`` (None if none)."""
    want = set(tokenize(claim))
    best: tuple[int, int] | None = None
    best_score = 0
    for start, end in passage_sentences(passage):
        score = len(want & set(tokenize(passage[start:end])))
        if score > best_score:
            best, best_score = (start, end), score
    return best


def marked(passage: str, spans: list[tuple[int, int]]) -> str:
    """The passage escaped, with ``spans`` (offsets, overlaps merged) in <mark>."""
    out, pos = [], 0
    for a, b in sorted(spans):
        a, b = max(a, pos), min(b, len(passage))
        if a >= b:
            continue
        out += [escape(passage[pos:a]), f"<mark class='pc-support'>{escape(passage[a:b])}</mark>"]
        pos = b
    return "".join(out) + escape(passage[pos:])


def support_spans(c: Citation, claim: str, quotes: Sequence[Quote] = ()) -> list[tuple[int, int]]:
    """The sentences of the passage the answer rests on: those the support check matched
    (``quotes`` of passage ``c.n``), else the one sharing the most words with ``claim``."""
    spans = [(q.start, q.end) for q in quotes if q.n == c.n and 0 <= q.start < q.end]
    if spans:
        return spans
    span = supporting_span(c.text, claim) if claim else None
    return [span] if span else []


def highlighted(passage: str, claim: str) -> str:
    span = supporting_span(passage, claim) if claim else None
    return marked(passage, [span] if span else [])


def answer_html(answer: Answer, turn: int) -> str:
    """The final answer: escaped text, [n] as links to the cards, or the abstention notice."""
    words = labels_for(answer.question)  # Japanese labels for a Japanese question
    if answer.abstained:
        why = words.get(ABSTAIN_WHY.get(answer.abstain_reason, ""), "")
        return (f"<div class='pc-abstain'><strong>{escape(words['no_answer'])}</strong> "
                f"{escape(answer.answer)}<br><small>{escape(why)}</small></div>")
    cited = {c.n for c in answer.citations}

    def link(m: re.Match[str]) -> str:
        parts = [f"<a class='pc-cite' href='#{card_id(turn, n)}' data-card='{card_id(turn, n)}'>"
                 f"{n}</a>" if n in cited else str(n) for n in expand(m.group(1))]
        return f"[{', '.join(parts)}]"

    body = MARKER.sub(link, escape(answer.answer))
    notes = []
    if not answer.citations:
        notes.append(words["no_citation"])
    if answer.removed_citations:
        notes.append(words["removed"].format(n=len(answer.removed_citations)))
    extra = "".join(f"<br><small class='pc-note'>{escape(n)}</small>" for n in notes)
    return f"<div class='pc-answer'>{body}{extra}</div>"


def error_html(message: str) -> str:
    return f"<div class='pc-error'><strong>No answer:</strong> {escape(message)}</div>"


def streaming_html(text: str) -> str:
    return f"<div class='pc-answer pc-streaming'>{escape(text)}</div>"


def _links(c: Citation, card: str) -> str:
    """"Show on page" (the viewer), the library's own PDF at the page (served by the app,
    offline), then the arXiv abstract and the PDF on the web when there are."""
    links = []
    if c.chunk_id is not None:
        links.append(f"<a class='pc-show' href='#{card}' data-card='{card}'>"
                     f"Show on page {c.page}</a>")
    links.append(f"<a class='pc-open-pdf' href='{escape(app_pdf_url(c.paper_id, c.page))}' "
                 f"target='_blank' rel='noopener'>Open PDF, page {c.page}</a>")
    if c.url:
        links.append(f"<a href='{escape(c.url)}' target='_blank' rel='noopener'>arXiv abstract</a>")
    if c.pdf_url:
        where = "arXiv PDF" if c.url else "PDF online"
        links.append(f"<a href='{escape(c.pdf_url)}' target='_blank' rel='noopener'>"
                     f"{where}, page {c.page}</a>")
    return " · ".join(links)


def card_html(c: Citation, turn: int, claim: str, open_: bool,
              quotes: Sequence[Quote] = ()) -> str:
    """A source card. Its data attributes let the page viewer find the passage: the chunk it
    starts at, its length, and the spans to highlight more strongly (offsets into it)."""
    authors = ", ".join(c.authors[:4]) + (" et al." if len(c.authors) > 4 else "")
    meta = " · ".join(x for x in (escape(authors), str(c.year or "n.d."), f"page {c.page}") if x)
    spans = support_spans(c, claim, quotes)
    cid = card_id(turn, c.n)
    viewer = (f" data-chunk='{c.chunk_id}' data-len='{len(c.text)}' data-n='{c.n}'"
              f" data-strong='{','.join(f'{a}-{b}' for a, b in spans)}'"
              if c.chunk_id is not None else "")
    return (f"<details class='pc-card' id='{cid}' data-paper='{escape(c.paper_id)}'"
            f" data-page='{c.page}'{viewer}{' open' if open_ else ''}>"
            f"<summary><span class='pc-n'>[{c.n}]</span> <span class='pc-title'>"
            f"{escape(c.title)}</span></summary>"
            f"<div class='pc-meta'>{meta}</div>"
            f"<p class='pc-passage'>{marked(c.text, spans)}</p>"
            f"<div class='pc-links'>{_links(c, cid)}</div></details>")


def export_blocks(answer: Answer) -> str:
    """The answer as Markdown and its cited papers as BibTeX, hidden in the sources section
    (what the export buttons copy or download: the newest answer's come first)."""
    return (f"<pre class='pc-export' data-kind='md' hidden>{escape(export.markdown(answer))}"
            f"</pre><pre class='pc-export' data-kind='bib' hidden>"
            f"{escape(export.bibtex(answer))}</pre>")


def sources_html(answer: Answer, turn: int) -> str:
    """The sources section of one answer: cited passages, else the passages given."""
    words = labels_for(answer.question)
    searched = answer.standalone_question
    query = (f"<div class='pc-meta pc-query'>{escape(words['searched'])} {escape(searched)}"
             "</div>" if searched and searched != answer.question else "")
    head = (f"<div class='pc-turn' data-turn='{turn}'>{export_blocks(answer)}"
            f"<div class='pc-q'>{escape(answer.question)}</div>{query}")
    if answer.citations:
        quotes = [q for s in answer.sentences for q in s.matches]
        cards = [card_html(c, turn, citing_sentences(answer.answer, c.n), True, quotes)
                 for c in answer.citations]
        return head + "".join(cards) + "</div>"
    if not answer.sources:
        return head + f"<p class='pc-none'>{escape(words['none_retrieved'])}</p></div>"
    given = [card_html(c, turn, "", False) for c in answer.sources]
    label = escape(words["none_close"] if answer.abstained else words["none_cited"])
    return head + f"<p class='pc-none'>{label}</p>" + "".join(given) + "</div>"


def plain_text(answer: Answer) -> str:
    """The answer and its references as plain text (what the copy button copies)."""
    return export.text(answer).rstrip("\n")


def timings_html(answer: Answer) -> str:
    """Timings, the tokens generated out of the request's limit (lowered when the model's
    context could not hold the asked maximum beside the passages) and the model."""
    t = answer.timings
    first = f", first token {t.ttft_ms / 1000:.1f} s" if t.ttft_ms else ""
    tokens = (f" · <span class='pc-tokens'>{answer.tokens} of at most {answer.max_tokens} "
              "tokens</span>" if answer.max_tokens else "")
    model = f" · {escape(answer.model)}" if answer.model else ""
    return (f"<small class='pc-timings'>retrieval {t.retrieval_ms:.0f} ms{first}, "
            f"total {t.total_ms / 1000:.1f} s{tokens}{model}</small>")
