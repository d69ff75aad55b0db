"""`paperchat eval` with answers from the real vLLM server, on a handful of questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from eval.metrics import marker_numbers
from eval.record import RECORD_VERSION
from paperchat.cli import main
from tests.helpers import DEV_QUESTIONS

pytestmark = [pytest.mark.slow, pytest.mark.llm]

TOO_LONG = "What label smoothing value was used when training the Transformer? " * 400


def dev(*ids: str) -> list[dict[str, Any]]:
    by_id = {q["id"]: q for q in map(json.loads, DEV_QUESTIONS.read_text().splitlines())}
    return [by_id[i] for i in ids]


def eval_cli(settings: Settings, url: str, *args: str) -> int:
    return main(["--data-dir", str(settings.data_dir), "--llm-url", url, "eval", *args])


def read(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = json.loads((out / "report.json").read_text())
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return report, recs


def test_full_run_records_a_model_failure_and_goes_on(
        corpus_settings: Settings, llm_url: str, tmp_path: Path) -> None:
    # "long" is longer than the served model's context: that one question fails with the
    # answerer's one-line error (its prompt is counted by the server's tokenizer and never
    # sent for vLLM to refuse); the other questions are answered and the run goes on
    questions = [*dev("d01", "d26", "d28"),
                 {"id": "long", "question": TOO_LONG, "answer": "0.1",
                  "must_contain_any": ["0.1"], "papers": ["1706.03762"]}]
    qs = tmp_path / "q.jsonl"
    qs.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    out = tmp_path / "full"
    assert eval_cli(corpus_settings, llm_url, str(qs), "-k", "3", "--out", str(out)) == 1
    report, recs = read(out)
    assert [r["id"] for r in recs] == ["d01", "d26", "d28", "long"]
    assert [r["status"] for r in recs] == ["ok", "ok", "ok", "error"]
    assert report["counts"]["errors"] == 1 and report["errors"][0]["id"] == "long"
    assert "too long" in recs[3]["error"] and "\n" not in recs[3]["error"]
    assert recs[3]["metrics"]["retrieval"]["recall@10"] is not None  # retrieval still scored
    assert report["model"] and all(r["model"] == report["model"] for r in recs[:3]
                                   if r["abstain_reason"] != "retrieval")
    for r in recs[:3]:
        assert isinstance(r["answer"], str) and r["answer"]
        assert isinstance(r["abstained"], bool)
        assert r["timings"]["total_ms"] > 0
        if not r["abstained"]:
            assert len(r["shown"]) <= 3 and r["tokens"] > 0
            assert r["timings"]["ttft_ms"] <= r["timings"]["total_ms"]
    for key in ("contains_rate", "token_f1"):
        assert report["answers"][key] is not None
    assert report["abstention"]["basis"] == "answers"
    for r in recs[:3]:  # validity is measured on the model's own text, whatever it wrote
        assert r["version"] == RECORD_VERSION and isinstance(r["raw_answer"], str)
        if r["abstained"]:
            continue
        marks = marker_numbers(r["raw_answer"])
        valid = sum(1 <= n <= len(r["shown"]) for n in marks)
        assert r["metrics"]["citations"]["validity"] == (valid / len(marks) if marks else None)
    assert report["latency"]["total_ms"]["p50"] > 0
    assert (out / "latency.png").stat().st_size > 0
    # a rerun retries only the failed question
    assert eval_cli(corpus_settings, llm_url, str(qs), "-k", "3", "--out", str(out)) == 1
    _, again = read(out)
    assert again[:3] == recs[:3] and again[3]["id"] == "long"


def test_no_retrieval_mode_answers_without_sources(
        corpus_settings: Settings, llm_url: str, tmp_path: Path) -> None:
    qs = tmp_path / "q.jsonl"
    qs.write_text("".join(json.dumps(q) + "\n" for q in dev("d05", "d28")))
    out = tmp_path / "bare"
    assert eval_cli(corpus_settings, llm_url, str(qs), "--mode", "no-retrieval",
                    "--out", str(out)) == 0
    report, recs = read(out)
    assert all(r["retrieved"] is None and r["shown"] is None for r in recs)
    assert all(r["answer"] for r in recs) and report["model"]
    assert report["retrieval"]["recall@5"] is None
    assert report["answers"]["n"]["contains_rate"] == 1
    assert report["latency"]["ttft_ms"]["n"] == 2
