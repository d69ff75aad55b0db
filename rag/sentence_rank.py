"""Evidence-level ranking: a candidate passage scored by its best sentence, from the
sentence vectors and tokens stored at ingest (``index.sentences``), so a query embeds
nothing but itself.

A sentence scores ``share * cosine(query, sentence) + (1 - share) * coverage``, where
coverage is the IDF-weighted share of the query's search tokens the sentence contains
(rare words such as a model name or a number count more than "model" or "use"). This is
the scoring of ``rag.evidence`` (which quotes evidence in answers) with the term coverage
weighted by IDF, on precomputed vectors.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.text import tokenize
from index.sentences import PERCENT, ChunkSentences

PERCENT_WORDS = frozenset({"percent", "percentag"})  # stems of percent, percentage(s)


def query_weights(query: str, idf: Mapping[str, float]) -> dict[str, float]:
    """The query's distinct search tokens that occur in the library, with their IDF; a
    question for a percentage looks for "percent" (which a sentence with "%" holds, see
    ``index.sentences.sentence_terms``)."""
    terms = [PERCENT if t in PERCENT_WORDS else t for t in tokenize(query)]
    known = {t: idf[t] for t in dict.fromkeys(terms) if t in idf}
    if PERCENT in terms and PERCENT not in known and known:
        known[PERCENT] = max(known.values())
    return known


def best_sentence_scores(query_vector: np.ndarray, weights: Mapping[str, float],
                         sentences: Mapping[int, ChunkSentences],
                         share: float) -> dict[int, float]:
    """Chunk id -> the score of its best sentence (chunks without sentences are left out)."""
    total = sum(weights.values())
    ids = [cid for cid, s in sentences.items() if len(s.spans)]
    if not ids:
        return {}
    vectors = np.concatenate([sentences[cid].vectors for cid in ids])
    cosines = vectors @ np.asarray(query_vector, dtype=np.float32)
    out: dict[int, float] = {}
    row = 0
    for cid in ids:
        s = sentences[cid]
        n = len(s.spans)
        best = -1.0
        for i in range(n):
            cover = (sum(weights.get(t, 0.0) for t in set(s.terms[i])) / total) if total else 0.0
            best = max(best, share * float(cosines[row + i]) + (1.0 - share) * cover)
        out[cid] = best
        row += n
    return out
