"""HTML for the chat: answers with clickable [n] citations, the abstention notice, and the
source cards with the supporting sentence highlighted. Pure functions of the typed values.

Card ids are ``src-<turn>-<n>``: citation [n] of answer number <turn> links to its card.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape

from core.text import passage_sentences, reflow, split_sentences, tokenize
from core.types import Answer, Citation, SentenceCheck
from rag.citations import MARKER, expand
from rag.extract import REPLACED_WHY

ABSTAIN_WHY = {
    "retrieval": "No passage in the library is close enough to the question.",
    "model": "The model found no support for an answer in the passages it was given.",
}


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


def flow(text: str) -> str:
    """PDF line breaks and runs of spaces as single spaces (the ends are kept)."""
    return re.sub(r"\s+", " ", text)


def highlighted(passage: str, claim: str) -> str:
    """The passage as one reflowed paragraph, the sentence supporting ``claim`` marked."""
    span = supporting_span(passage, claim) if claim else None
    if span is None:
        return escape(reflow(passage))
    a, b = span
    return (f"{escape(flow(passage[:a]).lstrip())}<mark class='pc-support'>"
            f"{escape(reflow(passage[a:b]))}</mark>{escape(flow(passage[b:]).rstrip())}")


def cite_linker(turn: int, linked: set[int]) -> Callable[[re.Match[str]], str]:
    """[n] markers as links to the cards of ``linked`` numbers (others stay text)."""
    def link(m: re.Match[str]) -> str:
        parts = [f"<a class='pc-cite' href='#{card_id(turn, n)}' data-card='{card_id(turn, n)}'>"
                 f"{n}</a>" if n in linked else str(n) for n in expand(m.group(1))]
        return f"[{', '.join(parts)}]"

    return link


def sentence_title(s: SentenceCheck) -> str:
    """The tooltip of a checked sentence."""
    if s.support in ("unsupported", "partial"):
        return f"{s.support.capitalize()}: {s.note or 'the cited passages do not say this'}."
    if s.support == "supported" and s.matches:
        q = s.matches[0]
        return f"Supported by [{q.n}]: “{reflow(q.text)}”"
    return "No citation: check this sentence against the sources."


def marked_sentences(answer: Answer, link: Callable[[re.Match[str]], str]) -> str:
    """The answer's text with each checked sentence in a span styled by its support (an
    unsupported or partial one flagged, the reason in its tooltip); text between stays."""
    text, out, pos = answer.answer, [], 0
    for s in answer.sentences:
        i = text.find(s.text, pos)
        if i < 0:
            continue
        out.append(MARKER.sub(link, escape(text[pos:i])))
        flag = (f"<sup class='pc-flag'>{s.support}</sup>"
                if s.support in ("unsupported", "partial") else "")
        out.append(f"<span class='pc-sent pc-{s.support}' "
                   f"title='{escape(sentence_title(s))}'>"
                   f"{MARKER.sub(link, escape(s.text))}{flag}</span>")
        pos = i + len(s.text)
    out.append(MARKER.sub(link, escape(text[pos:])))
    return "".join(out)




def support_summary(answer: Answer) -> str:
    """One line: how many sentences their citations support, and what is flagged."""
    totals = answer.support_totals()
    if not answer.sentences or answer.mode == "extract":
        return ""
    parts = [f"{totals['supported']} of {len(answer.sentences)} sentences supported by "
             "their citations"]
    parts += [f"{totals[k]} {k}" for k in ("partial", "unsupported", "uncited") if totals[k]]
    hint = " (hover a flagged sentence to see why)" if totals["partial"] + totals[
        "unsupported"] else ""
    return "; ".join(parts) + hint + "."


def model_answer_html(answer: Answer) -> str:
    """The label of a quoted answer, and the model's own text it replaced, collapsed."""
    if answer.mode != "extract":
        return ""
    if not answer.model_answer:
        label = "Quoted from the sources (no model was asked)."
        return f"<div class='pc-quoted-label'>{escape(label)}</div>"
    why = "; ".join(REPLACED_WHY[r] for r in answer.degenerate if r in REPLACED_WHY)
    return ("<div class='pc-quoted-label'>Quoted from the sources: the model's answer was "
            f"replaced ({escape(why or 'it degenerated')}).</div>")


def answer_html(answer: Answer, turn: int) -> str:
    """The final answer: each sentence styled by its checked support ([n] as links to the
    cards), quoted evidence labelled as such, or the abstention notice."""
    if answer.abstained:
        why = ABSTAIN_WHY.get(answer.abstain_reason, "")
        return (f"<div class='pc-abstain'><strong>No answer from the library.</strong> "
                f"{escape(answer.answer)}<br><small>{escape(why)}</small></div>")
    link = cite_linker(turn, {c.n for c in answer.citations})
    body = (marked_sentences(answer, link) if answer.sentences
            else MARKER.sub(link, escape(answer.answer)))
    notes = [support_summary(answer)]
    if not answer.citations:
        notes.append("This answer cites no passage: check it against the sources.")
    if answer.removed_citations:
        notes.append(f"{len(answer.removed_citations)} citation(s) to passages the model "
                     "was not given were removed.")
    extra = "".join(f"<br><small class='pc-note'>{escape(n)}</small>" for n in notes if n)
    model = ""
    if answer.model_answer:
        model = ("<details class='pc-model-answer'><summary>The model's own answer</summary>"
                 f"<div>{escape(answer.model_answer)}</div></details>")
    return (f"<div class='pc-answer pc-mode-{answer.mode}'>{model_answer_html(answer)}"
            f"{body}{extra}{model}</div>")


def evidence_html(answer: Answer, turn: int, linked: set[int]) -> str:
    """The quoted evidence of an answer: the passages' sentences that best answer the
    question, chosen without the model, each with [n] (a link where its card is shown),
    paper and page."""
    if not answer.evidence or answer.abstained:
        return ""
    link = cite_linker(turn, linked)
    items = "".join(
        f"<li class='pc-quote' data-n='{q.n}'>“{escape(reflow(q.text))}” "
        f"{MARKER.sub(link, f'[{q.n}]')} <span class='pc-meta'>{escape(q.title)}, "
        f"p. {q.page}</span></li>" for q in answer.evidence)
    return (f"<div class='pc-evidence'><div class='pc-evidence-h'>Evidence</div>"
            f"<ul>{items}</ul></div>")


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
    searched = answer.standalone_question
    query = (f"<div class='pc-meta pc-query'>Searched the library for: {escape(searched)}</div>"
             if searched and searched != answer.question else "")
    head = (f"<div class='pc-turn' data-turn='{turn}'>"
            f"<div class='pc-q'>{escape(answer.question)}</div>{query}")
    if answer.citations:
        cards = [card_html(c, turn, citing_sentences(answer.answer, c.n), True)
                 for c in answer.citations]
        evidence = evidence_html(answer, turn, {c.n for c in answer.citations})
        return head + evidence + "".join(cards) + "</div>"
    head += evidence_html(answer, turn, {c.n for c in answer.sources})
    if not answer.sources:
        return head + "<p class='pc-none'>No passage was retrieved.</p></div>"
    given = [card_html(c, turn, "", False) for c in answer.sources]
    label = ("Passages retrieved (none was close enough to answer):" if answer.abstained
             else "The answer cites none of the passages the model was given:")
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
