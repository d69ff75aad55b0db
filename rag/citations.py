"""Citations: parse [n], [1, 2], [1-3] markers, keep only numbers of passages that were in
the prompt (others are removed from the text and counted), resolve each to its passage, and
report sentences without a citation."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

from core.links import ARXIV_PDF, arxiv_abs_url, pdf_page_url
from core.text import split_sentences, tokenize
from core.types import Citation, Hit
from rag.guards import Echo, is_echo_sentence
from rag.prompts import REFUSALS

MARKER = re.compile(r"\[\s*(\d+(?:\s*[-–,]\s*\d+)*)\s*\]")
REFUSAL_PATTERNS = (
    re.compile(r"cannot answer from the library", re.IGNORECASE),
    re.compile(r"ライブラリ.{0,12}(答え|回答)(られ|でき)ません"),
    # the refusal of every language the prompt may ask for (rag.prompts.REFUSALS)
    *(re.compile(re.escape(r.rstrip(".。")), re.IGNORECASE) for r in REFUSALS.values()),
)


@dataclass
class Resolved:
    text: str  # the answer with invalid markers removed
    citations: list[Citation]
    removed: list[int]  # numbers the model invented
    uncited: list[str]


def expand(group: str) -> list[int]:
    """'1, 3-5' -> [1, 3, 4, 5] (ranges capped at 50 numbers)."""
    out: list[int] = []
    for part in re.split(r"\s*,\s*", group.strip()):
        if re.search(r"[-–]", part):
            a, b = (int(x) for x in re.split(r"\s*[-–]\s*", part))
            if a <= b:
                out.extend(range(a, min(b, a + 49) + 1))
        elif part:
            out.append(int(part))
    return out


def citation_for(n: int, hit: Hit, by: str = "model",
                 arxiv_pdf_url: str = ARXIV_PDF) -> Citation:
    """Passage [n] of the prompt, resolved: links built on ``arxiv_pdf_url``
    (ingest.arxiv_pdf_url) by :mod:`core.links`."""
    c = hit.chunk
    return Citation(n=n, paper_id=c.paper_id, title=hit.paper_title, page=c.page_start,
                    text=c.text, url=arxiv_abs_url(hit.arxiv_id, arxiv_pdf_url)
                    if hit.arxiv_id else None,
                    pdf_url=pdf_page_url(hit.arxiv_id, hit.pdf_url, c.page_start, arxiv_pdf_url),
                    chunk_id=c.id, year=hit.paper_year, authors=hit.authors, by=by)


def resolve_sources(hits: list[Hit], arxiv_pdf_url: str = ARXIV_PDF) -> list[Citation]:
    """Every passage given (``hits[i]`` is [i+1]), resolved once: what the terminal, the UI
    and the evaluation show (``by`` is empty: not cited)."""
    return [citation_for(n, h, "", arxiv_pdf_url) for n, h in enumerate(hits, 1)]


def resolve(answer: str, sources: list[Citation], attributed: set[int] | None = None) -> Resolved:
    """``sources[i]`` is the passage shown to the model as [i+1]; numbers in ``attributed``
    were added by overlap matching rather than written by the model."""
    valid = set(range(1, len(sources) + 1))
    removed: list[int] = []
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = expand(match.group(1))
        good = [n for n in numbers if n in valid]
        removed.extend(n for n in numbers if n not in valid)
        cited.extend(n for n in good if n not in cited)
        return f"[{', '.join(map(str, good))}]" if good else ""

    text = MARKER.sub(keep, answer)
    text = re.sub(r"[ \t]+([.,;:!?。])", r"\1", text).strip()
    citations = [replace(sources[n - 1], by="overlap" if n in (attributed or set()) else "model")
                 for n in sorted(cited)]
    return Resolved(text=text, citations=citations, removed=removed,
                    uncited=uncited_sentences(text))


def uncited_sentences(text: str) -> list[str]:
    return [s for s in split_sentences(text, 12) if not MARKER.search(s)]


def is_refusal(answer: str) -> bool:
    text = unicodedata.normalize("NFKC", answer)
    return any(p.search(text) for p in REFUSAL_PATTERNS)


def _content(text: str) -> tuple[set[str], set[str]]:
    tokens = set(tokenize(text))
    return tokens, {t for t in tokens if t[0].isdigit()}


def attribute_uncited(text: str, sources: list[Hit], min_overlap: float,
                      echo: Echo | None = None) -> tuple[str, list[int]]:
    """Add [n] to sentences without a marker when passage n clearly supports them: it holds
    ``min_overlap`` of the sentence's content words and every number in it. Returns the new
    text and the numbers added (only passages that were shown can be named). Echoed text
    (a copied few-shot example, the prompt's rules, the question) gets nothing, even when
    it overlaps a passage: copying is not support (``rag.guards``)."""
    if min_overlap > 1.0 or not sources:
        return text, []
    passages = [_content(f"{h.paper_title} {h.chunk.text}")[0] for h in sources]
    added: list[int] = []
    parts = []
    for sentence in re.split(r"(?<=[.!?。！？])(\s+)", text):
        words, numbers = _content(sentence)
        if len(words) >= 3 and not MARKER.search(sentence) \
                and not is_echo_sentence(sentence, echo):
            scored = [(len(words & p) / len(words), n) for n, p in enumerate(passages, 1)
                      if numbers <= p]
            best = max(scored, default=(0.0, 0))
            if best[0] >= min_overlap:
                sentence = _append_marker(sentence, best[1])
                added.append(best[1])
        parts.append(sentence)
    return "".join(parts), added


def _append_marker(sentence: str, n: int) -> str:
    body = sentence.rstrip()
    tail = sentence[len(body):]
    if body and body[-1] in ".!?。！？":
        return f"{body[:-1]} [{n}]{body[-1]}{tail}"
    return f"{body} [{n}]{tail}"
