"""Japanese questions: numbers, percentages and Latin-script names survive the rewrite into
the English retrieval query, with the terms fallback (no model) and with the real model
server (its rewrite is checked, and the fallback terms are appended to it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.llm import LLMClient
from rag.rewrite import latin_terms, rewrite_query
from tests.helpers import make_settings

# (question, strings that must be in the English query); written for this test
CASES = [
    ("GPT-3 175B を LoRA で適応したとき、学習可能なパラメータは何パーセント減りましたか？",
     ["GPT-3", "175B", "LoRA", "percent"]),
    ("精度が８０．５％だったのはどのモデルですか？", ["80.5%"]),
    ("学習率 6.25e-5 とバッチサイズ 32 を使ったのはどの論文？", ["6.25e-5", "32", "paper"]),
    ("LLaMA-65B は 2,048 台の A100 で何日かかりましたか？", ["LLaMA-65B", "2,048", "A100"]),
    ("速度向上は 2.5-4.5 倍の範囲でしたか、それとも 3D タスクでの話ですか？",
     ["2.5-4.5", "3D", "times"]),
    ("english_proverbs タスクで 62B から 540B へスコアはどう変わった？",
     ["english_proverbs", "62B", "540B"]),
]


@pytest.mark.parametrize(("question", "kept"), CASES)
def test_numbers_percentages_and_names_survive_without_a_model(question: str,
                                                              kept: list[str]) -> None:
    query = rewrite_query(question, [], None)
    words = query.split()
    for s in kept:
        assert s in words, (s, query)
    assert all(ord(ch) < 0x3000 for ch in query), query  # English only


def test_numbers_keep_units_and_are_not_split() -> None:
    assert latin_terms("3D と 175B と 96%").split() == ["3D", "175B", "96%"]
    assert "論文" not in latin_terms("この論文") and "paper" in latin_terms("この論文").split()


def test_an_english_question_is_not_rewritten() -> None:
    q = "What share of the data was 96% English?"
    assert rewrite_query(q, [], None) == q


@pytest.mark.llm
@pytest.mark.parametrize(("question", "kept"), CASES[:3])
def test_numbers_and_names_survive_the_models_rewrite(llm_url: str, tmp_path: Path,
                                                      question: str, kept: list[str]) -> None:
    settings = make_settings(tmp_path, llm={"base_url": llm_url})
    with LLMClient(settings.llm) as llm:
        query = rewrite_query(question, [], llm)
    words = query.split()
    for s in kept:
        assert s in words, (s, query)
