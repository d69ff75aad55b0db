"""Per-question metrics of one result record (a line of results.jsonl)."""

from __future__ import annotations

from typing import Any

from eval import metrics as m

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


def score_record(rec: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """All per-question metrics, grouped as in report.json."""
    return {"retrieval": retrieval_metrics(rec), "answers": answer_metrics(rec),
            "citations": citation_metrics(rec)}
