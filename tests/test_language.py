"""Any language: the question's language is detected offline (py3langid), the prompt asks
for the answer in it, the refusal comes in it, and the chat's labels are Japanese for a
Japanese question."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from core.types import Answer
from rag import language, prompts
from rag.citations import is_refusal
from tests.helpers import free_port, make_settings
from ui import render

QUESTIONS = {
    "en": "What BLEU score did the Transformer reach on English-to-German?",
    "fr": "Quelle est la taille du batch du Transformer base ?",
    "de": "Wie viele Attention-Heads hat BERT-base?",
    "es": "¿Cuántas cabezas de atención usa BERT?",
    "it": "Quante teste di attenzione usa BERT-base?",
    "pt": "Quantas cabeças de atenção o BERT usa?",
    "nl": "Hoeveel attention heads heeft BERT?",
    "ru": "Сколько голов внимания у BERT?",
    "ja": "Transformerのbaseモデルのアテンションヘッド数はいくつですか?",
    "zh": "Transformer的BLEU分数是多少？",
    "ko": "트랜스포머의 BLEU 점수는 얼마입니까?",
}


@pytest.mark.parametrize("code", sorted(QUESTIONS))
def test_language_is_detected(code: str) -> None:
    assert language.detect(QUESTIONS[code]) == code


@pytest.mark.parametrize("text", ["And its decoder?", "LoRA?", "GPT-3 few-shot results?", ""])
def test_short_or_technical_english_stays_english(text: str) -> None:
    assert language.detect(text) == "en"


@pytest.mark.parametrize("code", ["fr", "de", "ja", "es"])
def test_prompt_asks_for_the_question_language_and_its_refusal(code: str) -> None:
    system, user = prompts.answer_messages(QUESTIONS[code], ['<source n="1">x</source>'])
    name = language.NAMES[code]
    assert f"({name})" in system["content"] and f"Answer in {name}," in user["content"]
    assert f"reply exactly: {prompts.REFUSALS[code]}" in system["content"]
    assert is_refusal(prompts.REFUSALS[code]), "the answerer recognises that refusal"


def test_every_refusal_is_recognised_and_answers_are_not() -> None:
    assert all(is_refusal(r) for r in prompts.REFUSALS.values())
    assert not is_refusal("Le modèle de base utilise 8 têtes d'attention [1].")


def japanese_library(tmp_path: Path) -> Settings:
    from index.open import open_library
    from ingest.pipeline import ingest_items
    from tests.helpers import CORPUS_PDFS

    s = make_settings(tmp_path / "data", llm={"base_url": f"http://127.0.0.1:{free_port()}/v1"})
    ingest_items(s, open_library(s), [str(CORPUS_PDFS / "gpt1.pdf")])
    return s


@pytest.mark.slow
def test_japanese_off_topic_question_gets_a_japanese_refusal_and_labels(tmp_path: Path) -> None:
    """Through the real answerer (retrieval, then the abstention without the model: the
    model server address is dead, so any call would fail) and the chat's rendering."""
    from rag.engine import build_engine

    engine = build_engine(japanese_library(tmp_path))
    answer = engine.answerer.answer("オーストラリアの首都はどこですか?")
    assert answer.abstained and answer.abstain_reason == "retrieval"
    assert answer.answer == prompts.REFUSAL_JA
    html = render.answer_html(answer, 0)
    assert "ライブラリからは回答できません。" in html, "Japanese label"
    assert "質問に十分近い箇所がライブラリにありません。" in html, "Japanese reason"
    assert "No answer from the library" not in html
    sources = render.sources_html(answer, 0)
    assert "ライブラリの検索語" in sources or "検索された箇所" in sources


def test_english_labels_for_an_english_question() -> None:
    answer = Answer(question="What is the capital of Australia?", answer=prompts.REFUSAL,
                    abstained=True, abstain_reason="retrieval")
    html = render.answer_html(answer, 0)
    assert "No answer from the library." in html and "close enough" in html
