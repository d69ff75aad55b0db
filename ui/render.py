"""HTML for the chat: answers with clickable [n] citations, the abstention notice, and the
source cards with the supporting sentence highlighted. Pure functions of the typed values.

Card ids are ``src-<turn>-<n>``: citation [n] of answer number <turn> links to its card; a
card's data attributes tell the page viewer (``ui.viewer``) which passage to show. Each
answer's sources section also holds its Markdown and BibTeX export (hidden).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html import escape

from core.links import app_pdf_url
from core.text import passage_sentences, reflow, split_sentences, tokenize
from core.types import Answer, Citation, Quote, SentenceCheck
from rag import export
from rag.citations import MARKER, expand
from rag.extract import REPLACED_WHY
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


def flow(text: str) -> str:
    """PDF line breaks and runs of spaces as single spaces (the ends are kept)."""
    return re.sub(r"\s+", " ", text)


def marked(passage: str, spans: list[tuple[int, int]]) -> str:
    """The passage escaped and reflowed (one paragraph, no PDF line breaks), with ``spans``
    (offsets into the stored text, overlaps merged) in <mark>."""
    out, pos = [], 0
    for a, b in sorted(spans):
        a, b = max(a, pos), min(b, len(passage))
        if a >= b:
            continue
        out += [escape(flow(passage[pos:a])),
                f"<mark class='pc-support'>{escape(reflow(passage[a:b]))}</mark>"]
        pos = b
    return ("".join(out) + escape(flow(passage[pos:]))).strip()


def support_spans(c: Citation, claim: str, quotes: Sequence[Quote] = ()) -> list[tuple[int, int]]:
    """The sentences of the passage the answer rests on: those the support check matched
    (``quotes`` of passage ``c.n``), else the one sharing the most words with ``claim``."""
    spans = [(q.start, q.end) for q in quotes if q.n == c.n and 0 <= q.start < q.end]
    if spans:
        return spans
    span = supporting_span(c.text, claim) if claim else None
    return [span] if span else []


def highlighted(passage: str, claim: str) -> str:
    """The passage as one reflowed paragraph, the sentence supporting ``claim`` marked."""
    span = supporting_span(passage, claim) if claim else None
    return marked(passage, [span] if span else [])


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
        flag = (f"<sup class='pc-sflag'>{s.support}</sup>"
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
    words = labels_for(answer.question)  # Japanese labels for a Japanese question
    if answer.abstained:
        why = words.get(ABSTAIN_WHY.get(answer.abstain_reason, ""), "")
        return (f"<div class='pc-abstain'><strong>{escape(words['no_answer'])}</strong> "
                f"{escape(answer.answer)}<br><small>{escape(why)}</small></div>")
    link = cite_linker(turn, {c.n for c in answer.citations})
    body = (marked_sentences(answer, link) if answer.sentences
            else MARKER.sub(link, escape(answer.answer)))
    notes = [support_summary(answer)]
    if not answer.citations:
        notes.append(words["no_citation"])
    if answer.removed_citations:
        notes.append(words["removed"].format(n=len(answer.removed_citations)))
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
        evidence = evidence_html(answer, turn, {c.n for c in answer.citations})
        return head + evidence + "".join(cards) + "</div>"
    head += evidence_html(answer, turn, {c.n for c in answer.sources})
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
