"""HTML for the chat: answers with clickable [n] citations, the abstention notice, and the
source cards with the supporting sentence highlighted. Pure functions of the typed values.

Card ids are ``src-<turn>-<n>``: citation [n] of answer number <turn> links to its card.
"""

from __future__ import annotations

import re
from html import escape

from core.text import passage_sentences, split_sentences, tokenize
from core.types import Answer, Citation
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


def highlighted(passage: str, claim: str) -> str:
    span = supporting_span(passage, claim) if claim else None
    if span is None:
        return escape(passage)
    a, b = span
    return (f"{escape(passage[:a])}<mark class='pc-support'>{escape(passage[a:b])}</mark>"
            f"{escape(passage[b:])}")


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


def _links(c: Citation) -> str:
    links = []
    if c.url:
        links.append(f"<a href='{escape(c.url)}' target='_blank' rel='noopener'>arXiv abstract</a>")
    if c.pdf_url:
        links.append(f"<a href='{escape(c.pdf_url)}' target='_blank' rel='noopener'>"
                     f"PDF, page {c.page}</a>")
    return " · ".join(links) or "<span>local PDF (no arXiv link)</span>"


def card_html(c: Citation, turn: int, claim: str, open_: bool) -> str:
    authors = ", ".join(c.authors[:4]) + (" et al." if len(c.authors) > 4 else "")
    meta = " · ".join(x for x in (escape(authors), str(c.year or "n.d."), f"page {c.page}") if x)
    return (f"<details class='pc-card' id='{card_id(turn, c.n)}' data-paper='{escape(c.paper_id)}'"
            f" data-page='{c.page}'{' open' if open_ else ''}>"
            f"<summary><span class='pc-n'>[{c.n}]</span> <span class='pc-title'>"
            f"{escape(c.title)}</span></summary>"
            f"<div class='pc-meta'>{meta}</div>"
            f"<p class='pc-passage'>{highlighted(c.text, claim)}</p>"
            f"<div class='pc-links'>{_links(c)}</div></details>")


def sources_html(answer: Answer, turn: int) -> str:
    """The sources section of one answer: cited passages, else the passages given."""
    words = labels_for(answer.question)
    searched = answer.standalone_question
    query = (f"<div class='pc-meta pc-query'>{escape(words['searched'])} {escape(searched)}"
             "</div>" if searched and searched != answer.question else "")
    head = (f"<div class='pc-turn' data-turn='{turn}'>"
            f"<div class='pc-q'>{escape(answer.question)}</div>{query}")
    if answer.citations:
        cards = [card_html(c, turn, citing_sentences(answer.answer, c.n), True)
                 for c in answer.citations]
        return head + "".join(cards) + "</div>"
    if not answer.sources:
        return head + f"<p class='pc-none'>{escape(words['none_retrieved'])}</p></div>"
    given = [card_html(c, turn, "", False) for c in answer.sources]
    label = escape(words["none_close"] if answer.abstained else words["none_cited"])
    return head + f"<p class='pc-none'>{label}</p>" + "".join(given) + "</div>"


def plain_text(answer: Answer) -> str:
    """The answer and its references as plain text (what the copy button copies)."""
    lines = [answer.answer]
    if answer.citations:
        lines.append("")
    for c in answer.citations:
        link = c.pdf_url or c.url or c.paper_id
        lines.append(f"[{c.n}] {c.title} ({c.year or 'n.d.'}), p. {c.page}. {link}")
    return "\n".join(lines)


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
