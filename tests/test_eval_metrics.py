"""The evaluation metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval import metrics as m
from eval.aggregate import abstention, section
from eval.record import EvalRecord, Metrics
from eval.score import answer_metrics, citation_metrics, retrieval_metrics
from eval.stats import bootstrap, mean

RANKED = ["B", "A", "A", "C", "B", "D"]  # paper of each passage, in rank order


def test_recall_counts_each_gold_paper_once_at_its_first_passage() -> None:
    assert m.recall_at(RANKED, ["A"], 1) == 0.0
    assert m.recall_at(RANKED, ["A"], 2) == 1.0
    assert m.recall_at(RANKED, ["A", "D"], 5) == 0.5  # A at 2; D at 6
    assert m.recall_at(RANKED, ["A", "D"], 10) == 1.0
    assert m.recall_at(RANKED, ["A", "A"], 5) == 1.0  # a repeated gold id is one paper
    assert m.recall_at(RANKED, ["Z"], 10) == 0.0


def test_ranking_metrics_are_undefined_without_gold_papers() -> None:
    for fn in (m.mrr_at, m.ndcg_at):
        assert fn(RANKED, [], 10) is None
    assert m.recall_at(RANKED, [], 5) is None
    assert m.evidence_at([("A", "x")], [], ["x"], 5) is None
    assert m.evidence_at([("A", "x")], ["A"], [], 5) is None


def test_mrr() -> None:
    assert m.mrr_at(RANKED, ["C"], 10) == pytest.approx(1 / 4)
    assert m.mrr_at(RANKED, ["A", "C"], 10) == pytest.approx(1 / 2)
    assert m.mrr_at(RANKED, ["D"], 5) == 0.0  # rank 6 is past the cutoff
    assert m.mrr_at([], ["A"], 10) == 0.0


def test_ndcg_hand_computed() -> None:
    # gold A (first at rank 2) and D (rank 6): DCG = 1/log2(3) + 1/log2(7);
    # ideal: ranks 1 and 2 -> 1 + 1/log2(3).
    dcg = 1 / math.log2(3) + 1 / math.log2(7)
    assert m.ndcg_at(RANKED, ["A", "D"], 10) == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    # the second passage of B (rank 5) earns nothing: B already counted at rank 1
    assert m.ndcg_at(RANKED, ["B"], 10) == pytest.approx(1.0)
    assert m.ndcg_at(RANKED, ["A", "D"], 5) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_ties_keep_the_retrievers_order() -> None:
    # Two passages tie on score; the ranking is the list order the model is shown, so the
    # gold passage listed second is rank 2, whatever the scores.
    hits = [{"paper_id": "X", "text": "t", "score": 0.5}, {"paper_id": "G", "text": "t",
                                                              "score": 0.5}]
    rec = EvalRecord.model_validate({"id": "q", "question": "?", "retrieved": hits,
                                     "papers": ["G"], "must_contain_any": ["t"]})
    got = retrieval_metrics(rec)
    assert got["recall@1"] == 0.0 and got["mrr@10"] == 0.5
    assert got["evidence@5"] == 1.0


def test_evidence_needs_the_string_in_a_gold_papers_passage() -> None:
    passages = [("X", "trained for 3.5 days"), ("G", "ＢＥＲＴ ＵＳＥＳ 800Ｍ WORDS"),
                ("G", "3.5 days")]
    assert m.evidence_at(passages, ["G"], ["800m"], 2) == 1.0  # NFKC + case-folded
    assert m.evidence_at(passages, ["G"], ["3.5 days"], 2) == 0.0  # only in a non-gold one
    assert m.evidence_at(passages, ["G"], ["3.5 days"], 3) == 1.0


def test_contains_any_nfkc_both_sides() -> None:
    assert m.contains_any("It uses ＲｏＰＥ embeddings", ["rope"])
    assert m.contains_any("rope", ["ＲＯＰＥ"])
    assert not m.contains_any("nothing here", ["rope", ""])


def test_token_f1() -> None:
    assert m.token_f1("The cat sat [1].", "a cat sat") == 1.0
    # pred: {3.5? -> "3","5", days, on, 8, gpus}; ref: {3, 5, days}
    assert m.token_f1("3.5 days on 8 GPUs", "3.5 days") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert m.token_f1("", "x") == 0.0
    assert m.token_f1("クエリ", "クエリと値") == pytest.approx(2 * 1 * 0.6 / 1.6)


def test_abstention_scores_hand_computed() -> None:
    # (unanswerable, abstained): 2 TP, 1 FN, 1 FP among 4 answerable
    pairs = [(True, True), (True, True), (True, False), (False, True), (False, False),
             (False, False), (False, False)]
    got = m.abstention_scores(pairs)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["false_abstention_rate"] == pytest.approx(1 / 4)


def test_abstention_with_nothing_to_find() -> None:
    got = m.abstention_scores([(False, False), (False, False)])
    assert got["precision"] is None and got["recall"] is None and got["f1"] is None
    assert got["false_abstention_rate"] == 0.0
    got = m.abstention_scores([(True, False)])
    assert got["recall"] == 0.0 and got["precision"] is None and got["f1"] == 0.0


def answered(text: str, **kw: object) -> EvalRecord:
    """An answer record whose raw text is its final text (the model wrote every marker)."""
    data: dict[str, object] = {
        "id": "q", "question": "Which label smoothing value?", "answer": text,
        "raw_answer": text, "abstained": False, "unanswerable": False, "papers": ["G"],
        "must_contain_any": ["0.1"], "reference": "epsilon 0.1", "uncited_sentences": [],
        "shown": [{"rank": 1, "chunk_id": 11, "paper_id": "G"},
                  {"rank": 2, "chunk_id": 12, "paper_id": "X"}],
        "citations": [{"n": 1, "chunk_id": 11, "paper_id": "G"},
                      {"n": 2, "chunk_id": 12, "paper_id": "X"}]}
    data.update(kw)
    return EvalRecord.model_validate(data)


def test_citation_metrics() -> None:
    got = citation_metrics(answered("Label smoothing was 0.1 [1]. It helped BLEU [2]."))
    assert got == {"validity": 1.0, "precision": 0.5, "recall": 1.0, "uncited_share": 0.0,
                   "written_precision": 0.5, "written_recall": 1.0,
                   "attached_precision": None, "attached_recall": 0.0}
    # [3] names no passage the model was shown
    bad = answered("Label smoothing was 0.1 [1, 3]. It helped BLEU [2].")
    assert citation_metrics(bad)["validity"] == pytest.approx(2 / 3)
    one_uncited = answered("Label smoothing was 0.1 [1]. It also helped a lot overall.",
                           uncited_sentences=["It also helped a lot overall."])
    assert citation_metrics(one_uncited)["uncited_share"] == 0.5


def test_unanswerable_and_abstained_answers() -> None:
    unans = answered("Canberra is the capital [2].", unanswerable=True, papers=[],
                     must_contain_any=[])
    assert answer_metrics(unans) == {}  # answer quality is scored on answerable ones only
    got = citation_metrics(unans)
    assert got["precision"] is None and got["recall"] is None and got["validity"] == 1.0
    assert got["written_recall"] is None and got["attached_recall"] is None
    abstained = answered("I cannot answer from the library.", abstained=True)
    assert answer_metrics(abstained) == {"contains": 0.0, "token_f1": 0.0}
    # recall: share of answerable questions whose answer cites a gold paper, so a declined
    # answerable question counts 0 there; it has no validity or precision
    assert citation_metrics(abstained) == {"validity": None, "precision": None,
                                           "recall": 0.0, "uncited_share": None,
                                           "written_precision": None, "written_recall": 0.0,
                                           "attached_precision": None, "attached_recall": 0.0}
    declined_unans = unans.model_copy(update={"abstained": True, "citations": []})
    assert citation_metrics(declined_unans)["recall"] is None
    assert retrieval_metrics(unans.model_copy(update={"retrieved": []})) == {}


def test_citation_recall_counts_abstained_and_uncited_answerable_questions() -> None:
    cites_gold = answered("Label smoothing was 0.1 [1].",
                          citations=[{"n": 1, "chunk_id": 11, "paper_id": "G"}])
    cites_other = answered("It helped BLEU [2].",
                           citations=[{"n": 2, "chunk_id": 12, "paper_id": "X"}])
    uncited = answered("Label smoothing was 0.1.", citations=[],
                       uncited_sentences=["Label smoothing was 0.1."])
    by_model = answered("I cannot answer from the library.", abstained=True, citations=[])
    by_retrieval = answered("I cannot answer from the library.", abstained=True,
                            citations=[], shown=[])
    recs = [cites_gold, cites_other, uncited, by_model, by_retrieval]
    got = [citation_metrics(r) for r in recs]
    assert [g["recall"] for g in got] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert got[2]["precision"] is None and got[2]["validity"] is None
    records = [EvalRecord(id=str(i), question="?", metrics=Metrics(citations=g))
               for i, g in enumerate(got)]
    agg = section(records, "citations", ["recall", "precision"], np.random.default_rng(0))
    assert agg["recall"] == pytest.approx(1 / 5) and agg["n"]["recall"] == 5
    assert agg["precision"] == pytest.approx(1 / 2) and agg["n"]["precision"] == 2
    # retrieval-only and no-retrieval runs show no sources: no citation figures at all
    assert citation_metrics(by_model.model_copy(update={"shown": None})) == {}
    assert citation_metrics(cites_gold.model_copy(update={"answer": None})) == {}


def test_contains_ignores_citation_markers() -> None:
    rec = answered("The base model has eight heads [8].", must_contain_any=["8"])
    assert answer_metrics(rec)["contains"] == 0.0


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    a = bootstrap(values, mean, np.random.default_rng(7))
    b = bootstrap(values, mean, np.random.default_rng(7))
    assert a == b and a is not None
    assert 0.0 <= a[0] < mean(values) < a[1] <= 1.0  # type: ignore[operator]
    assert bootstrap([1.0], mean, np.random.default_rng(0)) is None


def test_section_and_abstention_aggregate() -> None:
    records = [EvalRecord(id=str(i), question="?", metrics=Metrics(retrieval={"recall@5": v}))
               for i, v in enumerate((1.0, 0.0, None, 1.0))]
    got = section(records, "retrieval", ["recall@5"], np.random.default_rng(0))
    assert got["recall@5"] == pytest.approx(2 / 3) and got["n"]["recall@5"] == 3
    recs = [EvalRecord(id="q", question="?", unanswerable=u, abstained=a) for u, a in
            [(True, True), (False, False), (False, True), (False, False)]]
    ab = abstention(recs, np.random.default_rng(0), "answers")
    assert ab["f1"] == pytest.approx(2 / 3) and ab["n"] == {"unanswerable": 1, "answerable": 3}


def test_percentile() -> None:
    assert m.percentile([], 50) is None
    assert m.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert m.percentile([0.0, 10.0], 95) == pytest.approx(9.5)
