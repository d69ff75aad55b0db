"""Sentence-level evidence: the sentences of retrieved passages scored against a question
(sentence embedding similarity and coverage of the question's terms), without a model.

Used for quoted evidence in answers, for refusals (do the best sentences address the
question?), for the tight prompt of a small model (each passage cut to its best sentences)
and, generally, for ranking passages by their best sentence. Functions take any list of
hits; numbering follows the list (``n`` = position + 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from core.text import passage_sentences, reflow, tokenize
from core.types import Hit, Quote
from index.embedder import Embedder, torch_threads
from rag.claims import Window, terms

MIN_CHARS = 25  # shorter fragments (headings, table debris) are not quoted
MAX_CHARS = 600  # longer "sentences" are table dumps or lost punctuation: not quoted
DENSE_WEIGHT = 0.5  # score = DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * term coverage
NUMBER_BONUS = 0.05  # a sentence with a number, for a question asking for a quantity
QUOTE_FLOOR = 0.6  # quotes after the first must score at least this share of the best
# Quotes from one passage at most: the answer is often the sentence after the best one, and
# a question's best sentences cluster in one passage (measured on the B question set: at
# most 1 a passage found the answer string in the 3 quotes for 0.55 of the questions, 2:
# 0.60).
PER_PASSAGE = 2
# Questions asking for a quantity (English and Japanese).
QUANTITY = re.compile(
    r"\b(how (many|much|long|large|big|fast|often)|what (percentage|fraction|share|"
    r"proportion|number|value|rate|size|score|accuracy|speedup)|by how much|which year)\b"
    r"|いくつ|何(個|人|台|層|日|時間|回|パーセント|%|倍|年)|パーセント|どれくらい|どのくらい",
    re.IGNORECASE)


def coverage(question_terms: set[str], sentence: str) -> float:
    """Share of the question's content terms that the sentence contains."""
    if not question_terms:
        return 0.0
    return len(question_terms & set(tokenize(sentence))) / len(question_terms)


def candidate_sentences(hits: Sequence[Hit]) -> list[Quote]:
    """Every sentence (MIN_CHARS to MAX_CHARS long) of every passage, numbered as the
    passages are (``n`` = position in ``hits`` + 1), unscored."""
    out = []
    for n, hit in enumerate(hits, 1):
        text = hit.chunk.text
        for start, end in passage_sentences(text):
            if MIN_CHARS <= len(text[start:end].strip()) <= MAX_CHARS:
                out.append(Quote(n=n, text=text[start:end], start=start, end=end,
                                 paper_id=hit.chunk.paper_id, title=hit.paper_title,
                                 page=hit.chunk.page_start))
    return out


def score_sentences(question: str, hits: Sequence[Hit], embedder: Embedder,
                    threads: int = 0) -> list[Quote]:
    """Every candidate sentence with its score, best first: the cosine of its embedding
    with the question's and the share of the question's terms it holds, half each; a
    sentence with a number gains NUMBER_BONUS when the question asks for a quantity.
    ``threads``: torch threads for the embedding (0: unchanged; one request is fastest on
    one beside a model server, see embedding.query_threads)."""
    quotes = candidate_sentences(hits)
    if not quotes:
        return []
    with torch_threads(threads):
        vectors = embedder.embed([question, *(reflow(q.text) for q in quotes)], "passage")
    cosines = np.asarray(vectors[1:] @ vectors[0])
    terms = set(tokenize(question))
    quantity = bool(QUANTITY.search(question))
    scored = []
    for q, cos in zip(quotes, cosines, strict=True):
        score = DENSE_WEIGHT * float(cos) + (1 - DENSE_WEIGHT) * coverage(terms, q.text)
        if quantity and re.search(r"\d", q.text):
            score += NUMBER_BONUS
        scored.append(replace(q, score=round(score, 4)))
    return sorted(scored, key=lambda q: -q.score)


def best_evidence(question: str, hits: Sequence[Hit], embedder: Embedder,
                  k: int = 3) -> list[Quote]:
    """The ``k`` best sentences of ``hits`` (see :func:`pick_evidence`)."""
    return pick_evidence(score_sentences(question, hits, embedder), k)


def pick_evidence(scored: Sequence[Quote], k: int = 3) -> list[Quote]:
    """Up to ``k`` of the scored sentences, best first, at most PER_PASSAGE of one passage;
    after the first, only those scoring at least QUOTE_FLOOR of the best."""
    chosen: list[Quote] = []
    used: dict[int, int] = {}
    for q in scored:
        if len(chosen) == k or (chosen and q.score < QUOTE_FLOOR * chosen[0].score):
            break
        if used.get(q.n, 0) < PER_PASSAGE:
            chosen.append(q)
            used[q.n] = used.get(q.n, 0) + 1
    return chosen


def renumber(quotes: Sequence[Quote], old: Sequence[Hit], new: Sequence[Hit]) -> list[Quote]:
    """Quotes numbered over ``old`` renumbered over ``new`` (dropped when not in it)."""
    position = {id(h.chunk): n for n, h in enumerate(new, 1)}
    out = []
    for q in quotes:
        n = position.get(id(old[q.n - 1].chunk))
        if n is not None:
            out.append(replace(q, n=n))
    return out


@dataclass(frozen=True)
class Signal:
    """How well the retrieved passages address a question (the refusal's inputs)."""

    best_dense: float  # best cosine of a passage in the whole library
    best_sentence: float  # score of the best sentence (see score_sentences)
    term_coverage: float  # share of the question's terms held by one of the best sentences
    name_coverage: float  # share of the question's names found in the passages or titles

    def to_dict(self) -> dict[str, float]:
        return {"best_dense": self.best_dense, "best_sentence": self.best_sentence,
                "term_coverage": self.term_coverage, "name_coverage": self.name_coverage}


def names_of(question: str) -> list[str]:
    """The names a question uses (capitalised words past the first, acronyms, GPT-3), but
    not single letters."""
    return [t for t in terms(question) if len(t) > 1]


def is_identifier(name: str) -> bool:
    """A name with letters and digits (GPT-4, H100, LLaMA-65B): it names one model,
    version or device, and passages that never mention it cannot answer about it."""
    return any(ch.isdigit() for ch in name) and any(ch.isalpha() for ch in name)


def signal(question: str, hits: Sequence[Hit], scored: Sequence[Quote],
           best_dense: float, front_matter: str = "", top: int = 5) -> Signal:
    """The refusal signal of a question over its hits and their scored sentences;
    ``front_matter`` (title, authors, first page of the hits' papers) also holds names."""
    wanted = set(tokenize(question))
    best = list(scored[:top])
    term_cov = max((coverage(wanted, q.text) for q in best), default=0.0)
    names = names_of(question)
    text = Window.of(" ".join([front_matter, *(f"{h.paper_title} {h.chunk.text}"
                                               for h in hits)]))
    missing = [t for t in names if not text.has_term(t)]
    name_cov = 1 - len(missing) / len(names) if names else 1.0
    if any(is_identifier(t) for t in missing):
        name_cov = 0.0  # the model, version or device asked about (H100, GPT-4) is absent
    return Signal(best_dense, best[0].score if best else 0.0, term_cov, name_cov)


def passage_excerpts(hits: Sequence[Hit], scored: Sequence[Quote],
                     per_passage: int) -> list[str]:
    """Each passage cut to its ``per_passage`` best sentences, in the passage's order,
    joined with " … " (a passage without a scored sentence keeps its text)."""
    out = []
    for n, hit in enumerate(hits, 1):
        mine = [q for q in scored if q.n == n][:per_passage]
        if not mine:
            out.append(hit.chunk.text)
            continue
        spans = sorted((q.start, q.end) for q in mine)
        out.append(" … ".join(reflow(hit.chunk.text[a:b]) for a, b in spans))
    return out
