"""Per-question metrics of one result record (a line of results.jsonl)."""

from __future__ import annotations

from typing import Any

from eval import metrics as m
from rag.claims import number_values, numbers

RECALL_KS = (1, 5, 10)
EVIDENCE_KS = (5, 10)


def retrieval_metrics(rec: dict[str, Any]) -> dict[str, float | None]:
    """Ranking metrics of an answerable question over its retrieved passages."""
    retrieved = rec.get("retrieved")
    gold = rec["papers"]
    if retrieved is None or rec["unanswerable"] or not gold:
        return {}
    ranked = [h["paper_id"] for h in retrieved]
    passages = [(h["paper_id"], h["text"]) for h in retrieved]
    out: dict[str, float | None] = {f"recall@{k}": m.recall_at(ranked, gold, k)
                                    for k in RECALL_KS}
    out["mrr@10"] = m.mrr_at(ranked, gold, 10)
    out["ndcg@10"] = m.ndcg_at(ranked, gold, 10)
    for k in EVIDENCE_KS:
        out[f"evidence@{k}"] = m.evidence_at(passages, gold, rec["must_contain_any"], k)
    return out


def answer_metrics(rec: dict[str, Any]) -> dict[str, float | None]:
    """Contains and token F1 of an answerable question's answer (0 when it abstained)."""
    if rec.get("answer") is None or rec["unanswerable"]:
        return {}
    text = m.strip_markers(rec["answer"])
    if rec["abstained"]:
        return {"contains": 0.0 if rec["must_contain_any"] else None, "token_f1": 0.0}
    contains = (float(m.contains_any(text, rec["must_contain_any"]))
                if rec["must_contain_any"] else None)
    return {"contains": contains,
            "token_f1": m.token_f1(text, rec["reference"]) if rec["reference"] else None}


def citation_metrics(rec: dict[str, Any]) -> dict[str, float | None]:
    """Citation figures of an answer given with sources. Recall is the share of answerable
    questions whose answer cites a gold paper, so an answerable question that abstained
    counts 0 there; it has no validity, precision or uncited share (None)."""
    if rec.get("answer") is None or rec.get("shown") is None:
        return {}
    if rec["abstained"]:
        answerable = bool(rec["papers"]) and not rec["unanswerable"]
        return {"validity": None, "precision": None,
                "recall": 0.0 if answerable else None, "uncited_share": None}
    cited = [(c["n"], c["chunk_id"]) for c in rec["citations"]]
    shown = [h["chunk_id"] for h in rec["shown"]]
    papers = [c["paper_id"] for c in rec["citations"]]
    gold = [] if rec["unanswerable"] else rec["papers"]
    return {"validity": m.citation_validity(rec["answer"], cited, shown),
            "precision": m.citation_precision(papers, gold),
            "recall": m.citation_recall(papers, gold),
            "uncited_share": m.uncited_share(rec["answer"], rec["uncited_sentences"])}


def supported_share(rec: dict[str, Any]) -> float | None:
    """Share of the answer's cited sentences that the support check found supported
    (rag.support); None without a cited sentence."""
    labels = [x["support"] for x in rec.get("sentences") or [] if x["citations"]]
    return sum(x == "supported" for x in labels) / len(labels) if labels else None


def unsupported_numbers(rec: dict[str, Any]) -> float | None:
    """1.0 when the answer states a number its citations do not hold: missing from the
    matching sentence of a cited passage, or in an uncited sentence and in no passage
    shown; None for an abstention or a run without sentence checks."""
    if rec.get("answer") is None or rec["abstained"] or rec.get("shown") is None \
            or not rec.get("sentences"):
        return None
    shown = number_values(" ".join(h["text"] for h in rec["shown"]))
    for x in rec["sentences"]:
        if x["citations"] and any(numbers(item) for item in x["missing"]):
            return 1.0
        if not x["citations"] and any(not (n.values & shown) for n in numbers(x["text"])):
            return 1.0
    return 0.0


def score_record(rec: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """All per-question metrics, grouped as in report.json."""
    answers, citations = answer_metrics(rec), citation_metrics(rec)
    if rec.get("answer") is not None and not rec.get("abstained"):
        answers["unsupported_numbers"] = unsupported_numbers(rec)
        citations["supported_share"] = supported_share(rec)
    return {"retrieval": retrieval_metrics(rec), "answers": answers, "citations": citations}
