"""The project's question sets (eval/sets): loadable by `paperchat eval`, big and varied
enough to tune on, split without overlap, and every answer string is in its gold papers'
extracted text (so evidence@k can be scored)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import cache

import pytest

from eval.questions import Question, load_questions
from ingest.extract import extract_pages
from tests.helpers import CORPUS_PDFS, REPO

SETS = REPO / "eval" / "sets"


def both() -> list[Question]:
    return load_questions(SETS / "tune.jsonl") + load_questions(SETS / "test.jsonl")


def extras() -> list[dict[str, object]]:
    return [json.loads(line) for name in ("tune", "test")
            for line in (SETS / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def test_sets_are_big_varied_and_disjoint() -> None:
    tune, test = load_questions(SETS / "tune.jsonl"), load_questions(SETS / "test.jsonl")
    assert not {q.id for q in tune} & {q.id for q in test}
    assert not {q.question for q in tune} & {q.question for q in test}
    questions = tune + test
    assert len(questions) >= 200
    per_paper = Counter(p for q in questions for p in q.papers)
    assert set(per_paper) == {p.stem for p in CORPUS_PDFS.glob("*.pdf")}
    assert min(per_paper.values()) >= 10
    kinds = Counter(str(r["kind"]) for r in extras())
    assert kinds["unanswerable-offtopic"] >= 10 and kinds["unanswerable-neartopic"] >= 10
    for kind in ("number", "name", "definition", "which-paper", "two-paper", "alias"):
        assert kinds[kind] >= 10, kind
    assert sum(r["lang"] == "ja" for r in extras()) >= 20
    assert all(len(q.papers) == 2 for q in questions
               if q.id in {r["id"] for r in extras() if r["kind"] == "two-paper"})
    assert all(q.unanswerable == (not q.papers) for q in questions)


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).casefold()


@cache
def paper_text(paper_id: str) -> str:
    return norm(" ".join(p.text for p in extract_pages(CORPUS_PDFS / f"{paper_id}.pdf",
                                                       paper_id)))


@pytest.mark.slow
def test_every_answer_string_is_in_a_gold_papers_text() -> None:
    missing = [(q.id, s) for q in both() for s in q.must_contain_any
               if not any(norm(s) in paper_text(p) for p in q.papers)]
    assert not missing
