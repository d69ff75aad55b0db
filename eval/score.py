"""Per-question metrics of one result record (a line of results.jsonl)."""

from __future__ import annotations

from eval import metrics as m
from eval.record import EvalRecord, Metrics
from rag.claims import number_values, numbers

RECALL_KS = (1, 5, 10)
EVIDENCE_KS = (5, 10)


def retrieval_metrics(rec: EvalRecord) -> dict[str, float | None]:
    """Ranking metrics of an answerable question over its retrieved passages."""
    if rec.retrieved is None or rec.unanswerable or not rec.papers:
        return {}
    ranked = [h.paper_id for h in rec.retrieved]
    passages = [(h.paper_id, h.text) for h in rec.retrieved]
    gold = rec.papers
    out: dict[str, float | None] = {f"recall@{k}": m.recall_at(ranked, gold, k)
                                    for k in RECALL_KS}
    out["mrr@10"] = m.mrr_at(ranked, gold, 10)
    out["ndcg@10"] = m.ndcg_at(ranked, gold, 10)
    for k in EVIDENCE_KS:
        out[f"evidence@{k}"] = m.evidence_at(passages, gold, rec.must_contain_any, k)
    return out


def answer_metrics(rec: EvalRecord) -> dict[str, float | None]:
    """Contains and token F1 of an answerable question's answer (0 when it abstained)."""
    if rec.answer is None or rec.unanswerable:
        return {}
    text = m.strip_markers(rec.answer)
    if rec.abstained:
        return {"contains": 0.0 if rec.must_contain_any else None, "token_f1": 0.0}
    contains = (float(m.contains_any(text, rec.must_contain_any))
                if rec.must_contain_any else None)
    return {"contains": contains,
            "token_f1": m.token_f1(text, rec.reference) if rec.reference else None}


def raw_markers(rec: EvalRecord) -> tuple[int, int] | None:
    """(valid, all) [n] markers of the model's raw text, valid when n names a passage it
    was shown; None when the model saw no sources or the raw text was not kept."""
    if rec.raw_answer is None or rec.shown is None:
        return None
    found = m.marker_numbers(rec.raw_answer)
    return sum(1 <= n <= len(rec.shown) for n in found), len(found)


def written_papers(rec: EvalRecord) -> list[str] | None:
    """The papers the model itself cited: each [n] of its raw text that names a shown
    passage, once per n (whether or not the cleaned or replaced answer kept it); None when
    the raw text was not kept (a version-1 record)."""
    if rec.raw_answer is None or rec.shown is None:
        return None
    shown = rec.shown
    valid = dict.fromkeys(n for n in m.marker_numbers(rec.raw_answer) if 1 <= n <= len(shown))
    return [shown[n - 1].paper_id for n in valid]


def attached_papers(rec: EvalRecord) -> list[str]:
    """The papers of the final answer's citations that paperchat attached (by overlap, or
    as quoted evidence), not the model."""
    return [c.paper_id for c in rec.citations if c.by != "model"]


def by_origin(prefix: str, papers: list[str] | None,
              gold: list[str]) -> dict[str, float | None]:
    if papers is None:
        return {f"{prefix}_precision": None, f"{prefix}_recall": None}
    return {f"{prefix}_precision": m.citation_precision(papers, gold),
            f"{prefix}_recall": m.citation_recall(papers, gold)}


def citation_metrics(rec: EvalRecord) -> dict[str, float | None]:
    """Citation figures of an answer given with sources. Validity is measured on the
    model's raw text (before invalid markers were removed); precision and recall on every
    citation the reader sees, and apart for those the model wrote (``written_``) and those
    paperchat attached (``attached_``). Recall is the share of answerable questions whose
    answer cites a gold paper, so an answerable question that abstained counts 0 there; it
    has no validity, precision or uncited share (None)."""
    if rec.answer is None or rec.shown is None:
        return {}
    if rec.abstained:
        recall = 0.0 if rec.papers and not rec.unanswerable else None
        return {"validity": None, "precision": None, "recall": recall, "uncited_share": None,
                "written_precision": None, "written_recall": recall,
                "attached_precision": None, "attached_recall": recall}
    papers = [c.paper_id for c in rec.citations]
    gold = [] if rec.unanswerable else rec.papers
    raw = rec.raw_answer
    out = {"validity": None if raw is None else m.citation_validity(raw, len(rec.shown)),
           "precision": m.citation_precision(papers, gold),
           "recall": m.citation_recall(papers, gold),
           "uncited_share": m.uncited_share(rec.answer, rec.uncited_sentences)}
    out.update(by_origin("written", written_papers(rec), gold))
    out.update(by_origin("attached", attached_papers(rec), gold))
    return out


def supported_share(rec: EvalRecord) -> float | None:
    """Share of the answer's cited sentences that the support check found supported
    (rag.support); None without a cited sentence."""
    labels = [x.support for x in rec.sentences if x.citations]
    return sum(x == "supported" for x in labels) / len(labels) if labels else None


def unsupported_numbers(rec: EvalRecord) -> float | None:
    """1.0 when the answer states a number its citations do not hold: missing from the
    matching sentence of a cited passage, or in an uncited sentence and in no passage
    shown; None for an abstention or a run without sentence checks."""
    if rec.answer is None or rec.abstained or rec.shown is None or not rec.sentences:
        return None
    shown = number_values(" ".join(h.text for h in rec.shown))
    for x in rec.sentences:
        if x.citations and any(numbers(item) for item in x.missing):
            return 1.0
        if not x.citations and any(not (n.values & shown) for n in numbers(x.text)):
            return 1.0
    return 0.0


def score_record(rec: EvalRecord) -> Metrics:
    """All per-question metrics, grouped as in report.json."""
    answers, citations = answer_metrics(rec), citation_metrics(rec)
    if rec.answer is not None and not rec.abstained:
        answers["unsupported_numbers"] = unsupported_numbers(rec)
        citations["supported_share"] = supported_share(rec)
    return Metrics(retrieval=retrieval_metrics(rec), answers=answers, citations=citations)
