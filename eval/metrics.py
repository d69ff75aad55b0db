"""Per-question metrics: pure functions of plain values (no I/O, no models).

Retrieval is scored at paper level: a passage is relevant when it comes from a gold paper.
Ranks are positions in the list the retriever returned (1-based); passages with equal scores
keep the retriever's order, since that order is what the model is shown. A gold paper counts
once, at the rank of its first passage, so several passages of one paper never score twice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from core.text import f1_tokens, normalize, split_sentences
from rag.citations import MARKER, expand


def contains_any(text: str, needles: Sequence[str]) -> bool:
    """Whether ``text`` contains one of ``needles`` (case-insensitive, after NFKC)."""
    hay = normalize(text)
    return any(normalize(n) in hay for n in needles if n.strip())


def strip_markers(text: str) -> str:
    return MARKER.sub(" ", text)


def tokens(text: str) -> list[str]:
    """Word tokens for F1 (``core.text.f1_tokens``)."""
    return f1_tokens(text)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 (citation markers removed from the prediction)."""
    pred, ref = tokens(strip_markers(prediction)), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def first_ranks(ranked_papers: Sequence[str], gold: Sequence[str]) -> dict[str, int]:
    """Gold paper -> rank (1-based) of its first passage in the list, for those found."""
    wanted, found = set(gold), {}
    for rank, paper in enumerate(ranked_papers, start=1):
        if paper in wanted and paper not in found:
            found[paper] = rank
    return found


def recall_at(ranked_papers: Sequence[str], gold: Sequence[str], k: int) -> float | None:
    """Share of gold papers with a passage among the top ``k``; None without gold papers."""
    if not gold:
        return None
    ranks = first_ranks(ranked_papers, gold)
    return sum(r <= k for r in ranks.values()) / len(set(gold))


def mrr_at(ranked_papers: Sequence[str], gold: Sequence[str], k: int = 10) -> float | None:
    """1 / rank of the first passage from a gold paper within the top ``k`` (else 0)."""
    if not gold:
        return None
    ranks = [r for r in first_ranks(ranked_papers, gold).values() if r <= k]
    return 1.0 / min(ranks) if ranks else 0.0


def ndcg_at(ranked_papers: Sequence[str], gold: Sequence[str], k: int = 10) -> float | None:
    """Binary nDCG@k: gain 1 at the first passage of each gold paper; the ideal list puts
    the gold papers at ranks 1..|gold|."""
    if not gold:
        return None
    n_gold = len(set(gold))
    dcg = sum(1.0 / math.log2(r + 1) for r in first_ranks(ranked_papers, gold).values()
              if r <= k)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_gold, k) + 1))
    return dcg / ideal


def evidence_at(passages: Sequence[tuple[str, str]], gold: Sequence[str],
                must_contain_any: Sequence[str], k: int) -> float | None:
    """1.0 when one of the top ``k`` (paper_id, text) passages is from a gold paper and
    contains one of ``must_contain_any``; None when there is nothing to look for."""
    if not gold or not any(s.strip() for s in must_contain_any):
        return None
    wanted = set(gold)
    return float(any(paper in wanted and contains_any(text, must_contain_any)
                     for paper, text in passages[:k]))


def sentences(text: str) -> list[str]:
    """Answer sentences, split as rag.citations splits them (short fragments dropped)."""
    return split_sentences(text, 12)


def marker_numbers(text: str) -> list[int]:
    """Every number in the [n] markers of ``text`` ("[1, 3-4]" -> 1, 3, 4)."""
    return [n for m in MARKER.finditer(text) for n in expand(m.group(1))]


def citation_validity(text: str, shown: int) -> float | None:
    """Share of the [n] markers of ``text`` that name a passage the model was shown (n in
    1..``shown``); None without markers. Give it the model's raw text: the final answer has
    its invalid markers removed, so there it is 1.0 by construction."""
    numbers = marker_numbers(text)
    if not numbers:
        return None
    return sum(1 <= n <= shown for n in numbers) / len(numbers)


def citation_precision(cited_papers: Sequence[str], gold: Sequence[str]) -> float | None:
    """Share of citations pointing into a gold paper; None without citations or gold."""
    if not cited_papers or not gold:
        return None
    wanted = set(gold)
    return sum(p in wanted for p in cited_papers) / len(cited_papers)


def citation_recall(cited_papers: Sequence[str], gold: Sequence[str]) -> float | None:
    """1.0 when the answer cites at least one gold paper; None without gold papers."""
    if not gold:
        return None
    return float(bool(set(cited_papers) & set(gold)))


def uncited_share(text: str, uncited: Sequence[str]) -> float | None:
    """Share of the answer's sentences that carry no citation; None for an empty answer."""
    total = len(sentences(text))
    return min(1.0, len(uncited) / total) if total else None


def abstention_scores(pairs: Sequence[tuple[bool, bool]]) -> dict[str, float | None]:
    """Precision, recall and F1 of abstaining, with unanswerable as the positive class, and
    the false-abstention rate on answerable questions. ``pairs`` = (unanswerable, abstained).
    A ratio with an empty denominator is None (F1 is 0 when no abstention is right)."""
    tp = sum(u and a for u, a in pairs)
    fp = sum(a and not u for u, a in pairs)
    fn = sum(u and not a for u, a in pairs)
    answerable = sum(not u for u, _ in pairs)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    # 2TP / (2TP + FP + FN): the harmonic mean of P and R, and 0 when nothing is right
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1,
            "false_abstention_rate": fp / answerable if answerable else None}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
