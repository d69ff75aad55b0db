"""Sentence-level evidence: the sentences of retrieved passages scored against a question
(sentence embedding similarity and coverage of the question's terms), without a model.

Used for quoted evidence in answers, for refusals (do the best sentences address the
question?) and for ranking passages by their best sentence.
"""

from __future__ import annotations

import numpy as np

from core.text import passage_sentences, reflow, tokenize
from core.types import Hit, Quote
from index.embedder import Embedder

MIN_CHARS = 25  # shorter fragments (headings, table debris) are not quoted
DENSE_WEIGHT = 0.5  # score = DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * term coverage


def coverage(question_terms: set[str], sentence: str) -> float:
    """Share of the question's content terms that the sentence contains."""
    if not question_terms:
        return 0.0
    return len(question_terms & set(tokenize(sentence))) / len(question_terms)


def candidate_sentences(hits: list[Hit]) -> list[Quote]:
    """Every sentence (at least MIN_CHARS long) of every passage, numbered as the passages
    are (``n`` = position in ``hits`` + 1), unscored."""
    out = []
    for n, hit in enumerate(hits, 1):
        text = hit.chunk.text
        for start, end in passage_sentences(text):
            if len(text[start:end].strip()) >= MIN_CHARS:
                out.append(Quote(n=n, text=text[start:end], start=start, end=end,
                                 paper_id=hit.chunk.paper_id, title=hit.paper_title,
                                 page=hit.chunk.page_start))
    return out


def score_sentences(question: str, hits: list[Hit], embedder: Embedder) -> list[Quote]:
    """Every candidate sentence with its score, best first."""
    quotes = candidate_sentences(hits)
    if not quotes:
        return []
    vectors = embedder.embed([question, *(reflow(q.text) for q in quotes)], "passage")
    cosines = vectors[1:] @ vectors[0]
    terms = set(tokenize(question))
    scored = [Quote(**{**q.to_dict(), "score": float(DENSE_WEIGHT * c + (1 - DENSE_WEIGHT)
                                                      * coverage(terms, q.text))})
              for q, c in zip(quotes, np.asarray(cosines), strict=True)]
    return sorted(scored, key=lambda q: -q.score)


def best_evidence(question: str, hits: list[Hit], embedder: Embedder, k: int = 3) -> list[Quote]:
    """The ``k`` best sentences, at most one per passage unless fewer passages remain."""
    scored = score_sentences(question, hits, embedder)
    chosen: list[Quote] = []
    used: set[int] = set()
    for q in scored:
        if q.n not in used:
            chosen.append(q)
            used.add(q.n)
        if len(chosen) == k:
            return chosen
    extra = [q for q in scored if q not in chosen]
    return chosen + extra[:k - len(chosen)]
