"""Citation figures of `paperchat eval` scored from constructed answers: validity on the
model's raw text, model-written and attached citations apart, the typed record on disk
(old results.jsonl lines still load) and `--compare` of an old report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.types import Answer, Chunk, Hit
from eval.aggregate import aggregate, citation_section
from eval.compare import compare_rows
from eval.record import RECORD_VERSION, EvalRecord
from eval.report import REPORT_JSON, REPORT_MD, write_report
from eval.results import RESULTS, ResultsWriter, load_done
from eval.runner import fill_answer
from eval.score import score_record
from rag.citations import MARKER, attribute_uncited, expand, resolve, resolve_sources

GOLD = "The big model reached 28.4 BLEU on the English-to-German translation task."
OTHER = "Label smoothing of value 0.1 was used during training of the base model."


def hit(rank: int, paper: str, text: str) -> Hit:
    chunk = Chunk(paper_id=paper, ordinal=rank, text=text, page_start=1, page_end=1,
                  char_start=0, char_end=len(text), id=100 + rank)
    return Hit(chunk=chunk, paper_title=f"Paper {paper}", paper_year=2017, score=1 / rank,
               rank=rank)


def answer_of(raw: str, attach: bool = False) -> Answer:
    """An answer made from the model's ``raw`` text as the answerer makes it: markers
    attached to uncited sentences by overlap (``attach``), invalid markers removed."""
    hits = [hit(1, "G", GOLD), hit(2, "X", OTHER)]
    sources = resolve_sources(hits)
    text, added = attribute_uncited(raw, hits, 0.5) if attach else (raw, [])
    by_model = {n for mk in MARKER.finditer(raw) for n in expand(mk.group(1))}
    resolved = resolve(text, sources, attributed=set(added) - by_model)
    return Answer(question="What BLEU did the big model reach?", answer=resolved.text,
                  abstained=False, citations=resolved.citations, hits=hits, sources=sources,
                  raw_answer=raw, removed_citations=resolved.removed,
                  uncited_sentences=resolved.uncited, model="m")


def scored(answer: Answer) -> EvalRecord:
    rec = EvalRecord(id="q", question=answer.question, reference="28.4 BLEU",
                     must_contain_any=["28.4"], papers=["G"])
    fill_answer(rec, answer)
    rec.metrics = score_record(rec)
    return rec


def test_validity_is_measured_on_the_models_raw_text() -> None:
    # the model cites [3] and [7], which name no passage it was shown: the final answer
    # has them removed, so validity measured there would be 1.0 by construction
    answer = answer_of("It reached 28.4 BLEU on English-to-German [1, 3]. It used label "
                       "smoothing of 0.1 [7] [2].")
    assert "[3]" not in answer.answer and "[7]" not in answer.answer
    rec = scored(answer)
    assert rec.raw_answer == answer.raw_answer and rec.removed_citations == [3, 7]
    assert rec.metrics.citations["validity"] == pytest.approx(2 / 4)
    section = citation_section([rec], np.random.default_rng(0))
    assert section["validity"] == pytest.approx(0.5)
    assert section["invented_share"] == pytest.approx(0.5)


def test_attached_citations_are_not_counted_as_the_models() -> None:
    # the model cites only the non-gold passage [2]; paperchat attaches the gold [1] to
    # the uncited sentence by overlap
    answer = answer_of("Label smoothing of 0.1 was used in training [2]. The big model "
                       "reached 28.4 BLEU on the English-to-German task.", attach=True)
    assert [(c.n, c.by) for c in answer.citations] == [(1, "overlap"), (2, "model")]
    got = scored(answer).metrics.citations
    assert got["precision"] == 0.5 and got["recall"] == 1.0  # what the reader sees
    assert got["written_precision"] == 0.0 and got["written_recall"] == 0.0
    assert got["attached_precision"] == 1.0 and got["attached_recall"] == 1.0
    assert got["validity"] == 1.0


def test_the_models_own_citations_count_even_when_the_answer_was_replaced() -> None:
    # auto mode replaced the model's answer by quoted evidence: the quote cites the gold
    # passage, the model had cited only the other one
    answer = answer_of("Label smoothing of 0.1 was used in training [2].")
    answer.model_answer, answer.mode = answer.answer, "extract"
    answer.answer = f"“{GOLD}” [1]"
    answer.citations = [replace(answer.sources[0], by="quote")]
    got = scored(answer).metrics.citations
    assert got["written_precision"] == 0.0 and got["written_recall"] == 0.0
    assert got["attached_precision"] == 1.0 and got["recall"] == 1.0


def report_of(records: list[EvalRecord], out: Path) -> tuple[dict[str, object], str]:
    report = aggregate(records, seed=0, retrieval_only=False, min_dense_score=0.3)
    report.update(run={"questions": "q.jsonl", "mode": "hybrid", "k": 2,
                       "retrieval_only": False}, model="m", git_commit=None)
    out.mkdir()
    write_report(out, report, records)
    return json.loads((out / REPORT_JSON).read_text()), (out / REPORT_MD).read_text()


def test_report_gives_written_and_attached_figures_apart(tmp_path: Path) -> None:
    records = [scored(answer_of("Label smoothing of 0.1 was used in training [2]. The big "
                                "model reached 28.4 BLEU on the English-to-German task.",
                                attach=True)),
               scored(answer_of("It reached 28.4 BLEU on English-to-German [1, 5]."))]
    report, md = report_of(records, tmp_path / "run")
    c = report["citations"]
    assert isinstance(c, dict)
    assert c["written_recall"] == 0.5 and c["attached_recall"] == 0.5 and c["recall"] == 1.0
    assert c["validity"] == pytest.approx((1.0 + 0.5) / 2)
    assert c["origin"] == {"model": 2, "overlap": 1, "quote": 0}
    assert c["attached_share"] == pytest.approx(1 / 3)
    assert c["n"]["written_precision"] == 2
    assert "| written_recall | 0.500 |" in md and "| attached_recall | 0.500 |" in md
    assert "1 attached by overlap" in md and "raw text" in md


def test_records_round_trip_and_old_lines_still_load(tmp_path: Path) -> None:
    rec = scored(answer_of("It reached 28.4 BLEU on English-to-German [1, 3]."))
    with ResultsWriter(tmp_path) as writer:
        writer.write(rec)
    line = json.loads((tmp_path / RESULTS).read_text())
    assert line["version"] == RECORD_VERSION and line["raw_answer"] == rec.raw_answer
    assert line["metrics"]["citations"]["validity"] == 0.5
    # a line written before the typed record: no version, raw_answer or sentence checks,
    # and its validity computed on the cleaned answer
    old = {key: line[key] for key in line if key not in ("version", "raw_answer",
                                                         "sentences", "evidence")}
    old.update(id="old", answer="It reached 28.4 BLEU on English-to-German [1].")
    old["metrics"]["citations"]["validity"] = 1.0
    with (tmp_path / RESULTS).open("a") as fh:
        fh.write(json.dumps(old) + "\n")
    done = load_done(tmp_path)
    assert list(done) == ["q", "old"]
    assert done["q"] == rec
    assert done["old"].version == 1 and done["old"].raw_answer is None
    # scored again by this code: no raw text, so no validity (not 1.0 by construction)
    assert done["old"].metrics.citations["validity"] is None
    assert done["old"].metrics.citations["recall"] == 1.0


def test_compare_reads_a_report_written_before_the_new_figures(tmp_path: Path) -> None:
    new, _ = report_of([scored(answer_of("It reached 28.4 BLEU [1]."))], tmp_path / "new")
    old = json.loads(json.dumps(new))
    for key in ("written_precision", "written_recall", "attached_precision",
                "attached_recall", "attached_share", "origin"):
        del old["citations"][key]
    rows = {key: (a, b) for key, a, b, _ in compare_rows(old, new)}
    assert rows["citations.written_recall"] == (None, 1.0)
    assert rows["citations.recall"] == (1.0, 1.0)
