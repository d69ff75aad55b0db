"""The optional NLI support check of citations (eval.nli_model), with 3-label cross-encoders
built locally from the packaged MiniLM weights whose heads make one label always win."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.settings import Settings
from eval.aggregate import aggregate
from eval.nli import NliChecker, cited_sentences, judge, share
from eval.questions import Question
from eval.record import EvalRecord
from eval.report import REPORT_JSON, REPORT_MD, write_report
from eval.runner import EvalContext, new_record
from eval.score import score_record
from paperchat.cli import main
from tests.crossencoders import build_cross_encoder
from tests.helpers import DEV_QUESTIONS, make_settings

MNLI = ["contradiction", "entailment", "neutral"]  # the usual order; found by name anyway
ATTENTION = ("The Transformer is based solely on attention mechanisms, dispensing with "
             "recurrence and convolutions entirely.")
BLEU = "Our model achieves 28.4 BLEU on the WMT 2014 English-to-German translation task."


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nli")
    return {
        "entails": build_cross_encoder(root / "entails", MNLI, bias=[0.0, 5.0, 0.0]),
        "contradicts": build_cross_encoder(root / "contradicts", MNLI, bias=[5.0, 0.0, 0.0]),
        # another label order: index 1 is neutral here, and it always wins
        "neutral_at_1": build_cross_encoder(root / "neutral_at_1",
                                            ["entailment", "neutral", "contradiction"],
                                            bias=[0.0, 5.0, 0.0]),
        "unlabelled": build_cross_encoder(root / "unlabelled", ["LABEL_0", "LABEL_1"]),
    }


def record(settings: Settings, qid: str, answer: str | None, citations: Sequence[str],
           **fields: Any) -> EvalRecord:
    """A result record as the runner writes it: [n] in ``answer`` cites ``citations[n-1]``."""
    q = Question(id=qid, question="What does the Transformer use?", answer="attention",
                 must_contain_any=("attention",), papers=("1706.03762",))
    rec = new_record(q, EvalContext(settings=settings, mode="hybrid", k=3,
                                    retrieval_only=False)).model_dump()
    shown = [{"rank": n, "paper_id": "1706.03762", "chunk_id": 100 + n, "page": 1,
              "score": 1.0, "dense_score": 0.5, "bm25_score": 1.0, "text": text}
             for n, text in enumerate(citations, 1)]
    rec.update(answer=answer, abstained=answer is None, shown=shown, model="m",
               citations=[{"n": h["rank"], "paper_id": h["paper_id"], "chunk_id": h["chunk_id"],
                           "title": "Attention Is All You Need", "page": 1, "text": h["text"]}
                          for h in shown],
               timings={"retrieval_ms": 5.0, "ttft_ms": 50.0, "total_ms": 90.0}, tokens=20)
    rec.update(raw_answer=answer, **fields)
    record = EvalRecord.model_validate(rec)
    record.metrics = score_record(record)
    return record


def results(settings: Settings) -> list[EvalRecord]:
    """Two cited answers (3 cited sentences, one uncited), an abstention and a failure."""
    return [
        record(settings, "q1", "The Transformer relies only on attention [1]. It reaches 28.4 "
               "BLEU on English-to-German [1, 2]. This sentence carries no citation at all.",
               [ATTENTION, BLEU]),
        record(settings, "q2", "It dispenses with recurrence entirely [1].", [ATTENTION]),
        record(settings, "q3", None, [], abstain_reason="retrieval", shown=[]),
        record(settings, "q4", None, [], status="error", error="The model server failed."),
    ]


def run_report(settings: Settings, out: Path, nli: NliChecker | None) -> tuple[dict[str, Any],
                                                                                str]:
    report = aggregate(results(settings), seed=0, retrieval_only=False, min_dense_score=0.33,
                       nli=nli)
    report.update(run={"questions": "q.jsonl", "mode": "hybrid", "k": 3,
                       "retrieval_only": False}, model="m", git_commit=None)
    out.mkdir()
    write_report(out, report, results(settings))
    return (json.loads((out / REPORT_JSON).read_text()),
            (out / REPORT_MD).read_text(encoding="utf-8"))


def test_entailment_winning_counts_every_cited_sentence_supported(
        models: dict[str, Path], tmp_path: Path) -> None:
    report, md = run_report(make_settings(tmp_path / "d"), tmp_path / "run",
                            NliChecker(str(models["entails"]), "cpu"))
    cit = report["citations"]
    assert cit["nli_support"] == 1.0
    assert cit["n"]["nli_support"] == 3  # the uncited sentence and q3/q4 are not judged
    assert cit["nli_model"] == str(models["entails"]) and cit["nli_unsupported"] == []
    assert f"model `{models['entails']}`" in md
    assert "| nli_support | 1.000 |" in md


def test_contradiction_winning_counts_none_supported(
        models: dict[str, Path], tmp_path: Path) -> None:
    report, md = run_report(make_settings(tmp_path / "d"), tmp_path / "run",
                            NliChecker(str(models["contradicts"]), "cpu"))
    cit = report["citations"]
    assert cit["nli_support"] == 0.0 and cit["n"]["nli_support"] == 3
    assert [u["id"] for u in cit["nli_unsupported"]] == ["q1", "q1", "q2"]
    assert cit["nli_unsupported"][1]["sentence"] == ("It reaches 28.4 BLEU on "
                                                     "English-to-German.")
    assert "| nli_support | 0.000 |" in md


def test_the_entailment_label_is_found_by_name_not_position(
        models: dict[str, Path], tmp_path: Path) -> None:
    checker = NliChecker(str(models["neutral_at_1"]), "cpu")
    assert checker.entailment == 0
    report, _ = run_report(make_settings(tmp_path / "d"), tmp_path / "run", checker)
    assert report["citations"]["nli_support"] == 0.0  # index 1 wins, and it is neutral


def test_without_a_model_the_figure_is_none_and_the_report_says_so(tmp_path: Path) -> None:
    report, md = run_report(make_settings(tmp_path / "d"), tmp_path / "run", None)
    assert report["citations"]["nli_support"] is None
    assert report["citations"]["nli_model"] is None
    assert "NLI support check: off" in md


def test_a_model_without_an_entailment_label_is_refused(models: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="entailment"):
        NliChecker(str(models["unlabelled"]), "cpu")


class KeywordChecker:
    """A stand-in for the model in this unit test: a premise holding 'SUPPORTS' entails."""

    name = "keyword"

    def entails(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return ["SUPPORTS" in premise for premise, _ in pairs]


def test_a_sentence_is_supported_when_any_cited_passage_entails_it(tmp_path: Path) -> None:
    rec = record(make_settings(tmp_path / "d"), "q", "First claim here [1, 2]. Second claim "
                 "here [2]. Third claim, cited twice [2][3].", ["SUPPORTS a", "b", "SUPPORTS c"])
    assert cited_sentences(rec) == [("First claim here.", ["SUPPORTS a", "b"]),
                                    ("Second claim here.", ["b"]),
                                    ("Third claim, cited twice.", ["b", "SUPPORTS c"])]
    judged = judge([rec], KeywordChecker())  # type: ignore[arg-type]
    assert [ok for _, ok in judged[0].supported] == [True, False, True]
    assert share(judged) == pytest.approx(2 / 3)


def test_eval_with_an_unloadable_nli_model_is_a_one_line_error(
        corpus_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the model is loaded before any question is run (and before the model server is asked)
    monkeypatch.setenv("PAPERCHAT_EVAL_NLI_MODEL", str(tmp_path / "no-such-nli"))
    code = main(["--data-dir", str(corpus_settings.data_dir), "--llm-url",
                 "http://127.0.0.1:9/v1", "eval", str(DEV_QUESTIONS), "--limit", "1",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert err[0].startswith("error: Cannot load the NLI model") and "eval.nli_model" in err[0]


@pytest.mark.slow
@pytest.mark.llm
def test_full_eval_run_reports_nli_support(
        corpus_settings: Settings, llm_url: str, models: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERCHAT_EVAL_NLI_MODEL", str(models["entails"]))
    out = tmp_path / "run"
    qs = tmp_path / "q.jsonl"
    qs.write_text("".join(line + "\n" for line in DEV_QUESTIONS.read_text().splitlines()
                          if json.loads(line)["id"] in ("d01", "d26")))
    code = main(["--data-dir", str(corpus_settings.data_dir), "--llm-url", llm_url, "eval",
                 str(qs), "-k", "3", "--out", str(out)])
    assert code == 0
    report = json.loads((out / REPORT_JSON).read_text())
    cit = report["citations"]
    assert cit["nli_model"] == str(models["entails"])
    assert report["settings"]["eval"]["nli_model"] == str(models["entails"])
    assert f"model `{models['entails']}`" in (out / REPORT_MD).read_text(encoding="utf-8")
    judged = cit["n"].get("nli_support", 0)
    assert cit["nli_support"] == (1.0 if judged else None)
