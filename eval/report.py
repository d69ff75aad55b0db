"""Write report.json, report.md and the PNG plots of a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from eval.record import EvalRecord

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
RECALL_PNG = "recall_at_k.png"
LATENCY_PNG = "latency.png"

TABLES = {  # section -> figures shown in report.md (report.json holds more)
    "retrieval": ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "evidence@5",
                  "evidence@10"),
    "answers": ("contains_rate", "token_f1", "unsupported_numbers"),
    "abstention": ("precision", "recall", "f1", "false_abstention_rate"),
    "citations": ("validity", "invented_share", "precision", "recall", "written_precision",
                  "written_recall", "attached_precision", "attached_recall", "attached_share",
                  "uncited_share", "supported_share", "nli_support"),
}


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metric_rows(report: dict[str, Any], name: str) -> list[str]:
    sec = report[name]
    rows = [f"### {name.capitalize()}", "", "| metric | value | 95% CI | n |", "|---|---|---|---|"]
    for key in TABLES[name]:
        ci = sec.get("ci95", {}).get(key)
        n = sec.get("n", {}).get(key, "")
        if isinstance(n, dict):
            n = ""
        ci_text = f"{fmt(ci[0])} – {fmt(ci[1])}" if ci else "–"
        rows.append(f"| {key} | {fmt(sec.get(key))} | {ci_text} | {n} |")
    return [*rows, ""]


def latency_rows(report: dict[str, Any]) -> list[str]:
    lat = report["latency"]
    rows = ["### Latency (ms)", "", "| stage | p50 | p95 | mean | n |", "|---|---|---|---|---|"]
    for key in ("retrieval_ms", "ttft_ms", "total_ms"):
        v = lat[key]
        rows.append(f"| {key} | {fmt(v['p50'], 1)} | {fmt(v['p95'], 1)} | "
                    f"{fmt(v['mean'], 1)} | {v['n']} |")
    rows += ["", f"Tokens generated: mean {fmt(lat['tokens']['mean'], 1)}, "
             f"total {lat['tokens']['total']}.", ""]
    return rows


def nli_line(citations: dict[str, Any]) -> str:
    """Which NLI model checked the citations (its n counts sentences, not questions)."""
    model = citations.get("nli_model")
    if not model:
        return "NLI support check: off (no NLI model configured; set eval.nli_model)."
    n = citations.get("n", {}).get("nli_support", 0)
    return (f"NLI support check: model `{model}`; nli_support is the share of {n} cited "
            "answer sentences that one of their cited passages entails.")


def citation_notes(citations: dict[str, Any]) -> list[str]:
    """What the citation figures are measured on, and who wrote the citations."""
    origin = citations.get("origin") or {}
    return ["validity and invented_share are measured on the model's raw text, before "
            "invalid [n] were removed; precision and recall count every citation of the "
            "final answers, written_* only the [n] the model wrote itself, attached_* only "
            "those paperchat attached (by overlap with a passage, or quoted evidence).",
            f"Citations of the final answers: {origin.get('model', 0)} written by the "
            f"model, {origin.get('overlap', 0)} attached by overlap, "
            f"{origin.get('quote', 0)} quoted evidence."]


def render_markdown(report: dict[str, Any]) -> str:
    run, counts = report["run"], report["counts"]
    lines = [f"# Evaluation: {Path(run['questions']).name}", "",
             f"- mode: **{run['mode']}**, k = {run['k']}"
             f"{', retrieval only' if run['retrieval_only'] else ''}"
             f"{', answer mode ' + run['answer_mode'] if run.get('answer_mode') else ''}",
             f"- model: {report.get('model') or '–'}; commit: {report.get('git_commit') or '–'}",
             f"- questions: {counts['questions']} (scored {counts['scored']}, skipped "
             f"{counts['skipped']}, failed {counts['errors']}; answerable "
             f"{counts['answerable']}, unanswerable {counts['unanswerable']})", ""]
    for item in report["skipped"]:
        lines.append(f"- skipped {item['id']}: not in the library: "
                     f"{', '.join(item['missing_papers'])}")
    for item in report["errors"]:
        lines.append(f"- failed {item['id']}: {item['error']}")
    lines.append("")
    for name in TABLES:
        lines += metric_rows(report, name)
    ab = report["abstention"]
    lines.append(f"Abstention basis: {ab['basis']}; {ab['n']['unanswerable']} unanswerable and "
                 f"{ab['n']['answerable']} answerable questions.")
    lines += ["", nli_line(report["citations"]), "", *citation_notes(report["citations"]), "",
              "supported_share: the share of cited answer sentences whose every number and "
              "name is in the matching sentence of a cited passage (rag.support); "
              "unsupported_numbers: the share of answers stating a number their citations "
              "do not hold.", ""]
    lines += latency_rows(report)
    bd = report["best_dense"]
    lines += ["### Best dense score (abstention signal)", "",
              "| questions | n | min | p05 | p50 | max |", "|---|---|---|---|---|---|"]
    for name in ("answerable", "unanswerable"):
        d = bd[name]
        lines.append(f"| {name} | {d['n']} | {fmt(d['min'])} | {fmt(d['p05'])} | "
                     f"{fmt(d['p50'])} | {fmt(d['max'])} |")
    lines += ["", f"Plots: [{RECALL_PNG}]({RECALL_PNG}), [{LATENCY_PNG}]({LATENCY_PNG}).", ""]
    return "\n".join(lines)


def plot_recall(curve: dict[str, list[Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (("recall", "paper recall@k"), ("evidence", "evidence recall@k")):
        ys = [float("nan") if y is None else y for y in curve[key]]
        ax.plot(curve["k"], ys, marker="o", label=label)
    ax.set(xlabel="k (passages)", ylabel="recall", ylim=(0, 1.02), xticks=curve["k"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(records: Sequence[EvalRecord], path: Path) -> None:
    """Histograms of retrieval, first-token and total time (total only when a model ran:
    in a retrieval-only run it is the retrieval time)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ok = [r for r in records if r.status == "ok"]
    with_model = any(r.timings.ttft_ms is not None for r in ok)
    for key in ("retrieval_ms", "ttft_ms", "total_ms") if with_model else ("retrieval_ms",):
        vals = [v for r in ok if (v := getattr(r.timings, key)) is not None]
        if vals:
            ax.hist(vals, bins=20, alpha=0.6, label=key)
    ax.set(xlabel="milliseconds", ylabel="questions")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, report: dict[str, Any], records: Sequence[EvalRecord]) -> None:
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, ensure_ascii=False,
                                              default=str) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    plot_recall(report["retrieval"]["curve"], out / RECALL_PNG)
    plot_latency(records, out / LATENCY_PNG)
