"""Aggregate per-question records into the report's figures, with seeded 95% bootstrap
intervals (``eval.stats``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from eval import metrics as m
from eval.record import EvalRecord
from eval.score import EVIDENCE_KS, RECALL_KS, raw_markers
from eval.stats import bootstrap, mean

if TYPE_CHECKING:
    from eval.nli import NliChecker

CURVE_KS = tuple(range(1, 11))
CITATION_FIGURES = ("validity", "precision", "recall", "written_precision", "written_recall",
                    "attached_precision", "attached_recall", "uncited_share",
                    "supported_share")


def section(records: Sequence[EvalRecord], group: str, names: Sequence[str],
            rng: np.random.Generator) -> dict[str, Any]:
    """Means of per-question metrics ``names`` of ``group``, each with its interval and n."""
    out: dict[str, Any] = {}
    ci95: dict[str, list[float] | None] = {}
    n: dict[str, int] = {}
    for name in names:
        values = [v for r in records if (v := r.metrics.group(group).get(name)) is not None]
        out[name] = mean(values)
        ci95[name] = bootstrap(values, mean, rng)
        n[name] = len(values)
    return {**out, "ci95": ci95, "n": n}


def recall_curve(records: Sequence[EvalRecord]) -> dict[str, list[float | None]]:
    """Mean paper recall@k and evidence@k for k = 1..10 (the plot's data)."""
    rows = [(r, r.retrieved) for r in records
            if r.retrieved is not None and r.papers and not r.unanswerable]
    recall, evidence = [], []
    for k in CURVE_KS:
        recall.append(mean([v for r, hits in rows if (v := m.recall_at(
            [h.paper_id for h in hits], r.papers, k)) is not None]))
        evidence.append(mean([v for r, hits in rows if (v := m.evidence_at(
            [(h.paper_id, h.text) for h in hits], r.papers, r.must_contain_any, k))
            is not None]))
    return {"k": list(CURVE_KS), "recall": recall, "evidence": evidence}


def abstention(records: Sequence[EvalRecord], rng: np.random.Generator,
               basis: str) -> dict[str, Any]:
    pairs = [(r.unanswerable, r.abstained) for r in records if r.abstained is not None]
    out: dict[str, Any] = dict(m.abstention_scores(pairs))
    out["ci95"] = {}
    for name in ("precision", "recall", "f1", "false_abstention_rate"):
        def stat(sample: Sequence[tuple[bool, bool]], key: str = name) -> float | None:
            return m.abstention_scores(sample)[key]

        out["ci95"][name] = bootstrap(pairs, stat, rng)
    out["n"] = {"unanswerable": sum(u for u, _ in pairs),
                "answerable": sum(not u for u, _ in pairs)}
    out["basis"] = basis
    return out


def best_dense(records: Sequence[EvalRecord]) -> dict[str, Any]:
    """Distribution of the best dense cosine score (the retrieval abstention signal)."""
    out: dict[str, Any] = {}
    for name, unanswerable in (("answerable", False), ("unanswerable", True)):
        vals = sorted(r.best_dense for r in records
                      if r.best_dense is not None and r.unanswerable == unanswerable)
        out[name] = {"n": len(vals), "min": vals[0] if vals else None,
                     "p05": m.percentile(vals, 5), "p50": m.percentile(vals, 50),
                     "max": vals[-1] if vals else None, "values": vals}
    return out


def latency(records: Sequence[EvalRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("retrieval_ms", "ttft_ms", "total_ms"):
        vals = [v for r in records if (v := getattr(r.timings, name)) is not None]
        out[name] = {"p50": m.percentile(vals, 50), "p95": m.percentile(vals, 95),
                     "mean": mean(vals), "n": len(vals)}
    tokens = [r.tokens for r in records if r.tokens is not None]
    out["tokens"] = {"mean": mean(tokens), "total": int(sum(tokens)), "n": len(tokens)}
    return out


def add_nli(citations: dict[str, Any], answered: Sequence[EvalRecord],
            nli: NliChecker | None, seed: int) -> None:
    """The NLI support figure (None, model None, when no NLI model is configured); its own
    generator, so configuring one leaves every other interval unchanged."""
    citations.update(nli_support=None, nli_model=None)
    if nli is None:
        return
    from eval.nli import nli_section

    found = nli_section(answered, nli, np.random.default_rng(seed))
    citations["ci95"]["nli_support"] = found.pop("ci95")
    citations["n"]["nli_support"] = found.pop("n")
    citations.update(found)


def citation_section(answered: Sequence[EvalRecord], rng: np.random.Generator) -> dict[str, Any]:
    """Per-question citation figures, and pooled over the answers given with sources:
    ``invented_share`` (markers of the model's raw text naming no shown passage),
    ``attached_share`` (citations of the final answers that paperchat attached) and
    ``origin`` (how many citations the model wrote, were attached by overlap, or quoted)."""
    citations = section(answered, "citations", CITATION_FIGURES, rng)
    shown = [r for r in answered if r.shown is not None and not r.abstained]
    counted = [c for r in shown if (c := raw_markers(r)) is not None]
    markers = sum(total for _, total in counted)
    citations["invented_share"] = (sum(total - valid for valid, total in counted) / markers
                                   if markers else None)
    final = [c.by for r in shown for c in r.citations]
    citations["attached_share"] = (sum(by != "model" for by in final) / len(final)
                                   if final else None)
    citations["origin"] = {by: final.count(by) for by in ("model", "overlap", "quote")}
    return citations


def aggregate(records: Sequence[EvalRecord], *, seed: int, retrieval_only: bool,
              min_dense_score: float, nli: NliChecker | None = None) -> dict[str, Any]:
    """Every figure of report.json except the run's metadata."""
    rng = np.random.default_rng(seed)
    scored = [r for r in records if r.status != "skipped"]
    answered = [r for r in scored if r.status == "ok"]
    retrieval_names = [f"recall@{k}" for k in RECALL_KS] + ["mrr@10", "ndcg@10"] + [
        f"evidence@{k}" for k in EVIDENCE_KS]
    retrieval = section(scored, "retrieval", retrieval_names, rng)
    retrieval["curve"] = recall_curve(scored)
    answers = section(answered, "answers", ["contains", "token_f1", "unsupported_numbers"],
                      rng)
    answers = {"contains_rate" if key == "contains" else key: value
               for key, value in answers.items()}
    for sub in ("ci95", "n"):
        answers[sub] = {"contains_rate" if key == "contains" else key: value
                        for key, value in answers[sub].items()}
    citations = citation_section(answered, rng)
    add_nli(citations, answered, nli, seed)
    basis = (f"retrieval threshold (best dense < {min_dense_score:g})" if retrieval_only
             else "answers")
    return {
        "retrieval": retrieval, "answers": answers,
        "abstention": abstention(answered, rng, basis), "citations": citations,
        "latency": latency(answered), "best_dense": best_dense(scored),
        "counts": {"questions": len(records), "scored": len(scored),
                   "skipped": len(records) - len(scored),
                   "errors": sum(r.status == "error" for r in scored),
                   "answerable": sum(not r.unanswerable for r in scored),
                   "unanswerable": sum(r.unanswerable for r in scored)},
        "skipped": [{"id": r.id, "missing_papers": r.missing_papers}
                    for r in records if r.status == "skipped"],
        "errors": [{"id": r.id, "error": r.error} for r in scored
                   if r.status == "error"],
    }
