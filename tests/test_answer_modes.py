"""Answers a reader can trust, end to end over the library of the whole corpus: refusals
with and without a model, the extract mode with no server at all, and (with a scripted
model server, for answers a real model will not give on demand) the loop guard closing the
stream, echo stripped, a wrong number flagged in the answer, in `ask` and in `ask --json`;
then the real vLLM server in auto mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from core.types import Answer
from rag.citations import MARKER, expand
from rag.engine import Engine, build_engine
from tests.helpers import free_port
from tests.llm_stub import SOURCE, ScriptedServer, scripted_server, source_number

pytestmark = [pytest.mark.slow]

BLEU = ("What BLEU score did the big Transformer model reach on the WMT 2014 "
        "English-to-German translation task?")
OFF_TOPIC = "How do I make a French onion soup, and how long should the onions caramelize?"
NEAR_TOPIC = ("How many parameters does GPT-4 have?",
              "What speedup does FlashAttention achieve on NVIDIA H100 GPUs?")


def with_llm(base: Settings, **llm: object) -> Settings:
    s = base.model_copy(deep=True)
    for key, value in llm.items():
        setattr(s.llm, key, value)
    return s


@pytest.fixture(scope="module")
def dead(corpus_settings: Settings) -> Settings:
    """The corpus library with a model server URL nothing listens on."""
    return with_llm(corpus_settings, base_url=f"http://127.0.0.1:{free_port()}/v1")


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAPERCHAT_LLM_BASE_URL": settings.llm.base_url}
    return subprocess.run([sys.executable, "-m", "paperchat.cli", "--data-dir",
                           str(settings.data_dir), "ask", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def assert_quotes(answer: Answer) -> None:
    """An extractive answer: 1-3 sentences quoted verbatim from the passages, each cited."""
    assert answer.mode == "extract" and not answer.abstained
    assert 1 <= len(answer.evidence) <= 3 and len(answer.sentences) == len(answer.evidence)
    for q, s in zip(answer.evidence, answer.sentences, strict=True):
        assert answer.sources[q.n - 1].text[q.start:q.end] == q.text
        assert s.support == "supported" and s.citations == [q.n] and s.text in answer.answer
    assert {c.n for c in answer.citations} == {q.n for q in answer.evidence}


# -- without a model ---------------------------------------------------------------------

def test_extract_mode_answers_with_no_server_running(dead: Settings) -> None:
    engine = build_engine(with_llm(dead, answer_mode="extract"))
    answer = engine.answerer.answer(BLEU)
    assert_quotes(answer)
    assert answer.model == "" and answer.model_answer == "" and answer.timings.ttft_ms is None
    assert "28.4" in answer.answer
    run = cli(dead, "--mode", "extract", "--json", BLEU)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["mode"] == "extract" and data["evidence"] and "28.4" in data["answer"]
    assert data["support"]["supported"] == len(data["sentences"]) > 0
    assert {"text", "citations", "support", "missing"} <= set(data["sentences"][0])
    hit_text = {h["chunk_id"]: h["text"] for h in data["hits"]}
    assert all(c["text"] == hit_text[c["chunk_id"]] for c in data["citations"])  # as stored
    text = cli(dead, "--mode", "extract", BLEU)
    assert text.returncode == 0, text.stderr
    assert "Quoted from the sources (no model was asked):" in text.stdout
    assert "“" in text.stdout and "28.4" in text.stdout and "✓" in text.stdout


@pytest.mark.parametrize("question", [OFF_TOPIC, *NEAR_TOPIC])
def test_unanswerable_questions_are_refused_without_a_model(dead: Settings,
                                                            question: str) -> None:
    for mode in ("generate", "extract"):  # a model call would fail: none is made
        answer = build_engine(with_llm(dead, answer_mode=mode)).answerer.answer(question)
        assert answer.abstained and answer.abstain_reason == "retrieval", answer.signal
        assert answer.citations == [] and answer.sentences == [] and answer.evidence == []


# -- a scripted model --------------------------------------------------------------------

@pytest.fixture
def scripted(corpus_settings: Settings) -> Iterator[tuple[ScriptedServer, Engine]]:
    """A scripted server (each test sets its script) and an engine talking to it."""
    with scripted_server(lambda messages: "") as server:
        yield server, build_engine(with_llm(corpus_settings, base_url=server.url))


def wrong_number(messages: list[dict[str, str]]) -> str:
    """The issue's answer: 41.0 (English-to-French) given for English-to-German, citing the
    passage that holds both sentences."""
    n = source_number(messages, "28.4", "41.0")
    return (f"The big Transformer model achieved a BLEU score of 41.0 on the WMT 2014 "
            f"English-to-German translation task [{n}]. It improves over the best previous "
            f"result by more than 2.0 BLEU [{n}].")


def test_a_small_context_gets_the_best_sentences_of_fewer_passages(
        scripted: tuple[ScriptedServer, Engine], corpus_settings: Settings) -> None:
    """The scripted server serves a 2,048-token context: the prompt shows the first
    llm.tight_passages passages, each cut to its best sentences; 'chunks' shows them
    whole. The numbering is the retrieval's either way."""
    server, engine = scripted
    server.script = lambda messages: "It reached 28.4 BLEU [1]."
    tight = engine.answerer.answer(BLEU, mode="generate", k=6)
    blocks = SOURCE.findall(server.requests[-1]["messages"][-1]["content"])
    assert len(blocks) == len(tight.hits) == 3
    texts = [text for _, text in blocks]
    assert all(len(t) <= len(h.chunk.text) for t, h in zip(texts, tight.hits, strict=True))
    # the joiner " … " (sources are sanitised: it may reach the model as " ... ")
    assert any(" … " in t or " ... " in t for t in texts) and "28.4" in texts[0]
    whole = build_engine(with_llm(corpus_settings, base_url=server.url,
                                  prompt_passages="chunks")).answerer
    full = whole.answer(BLEU, mode="generate", k=6)
    sent = SOURCE.findall(server.requests[-1]["messages"][-1]["content"])
    assert len(sent) == len(full.hits) > 3
    assert [h.chunk.id for h in full.hits[:3]] == [h.chunk.id for h in tight.hits]
    assert sum(map(len, texts)) < sum(len(t) for _, t in sent)  # a shorter prompt


def test_a_wrong_number_is_unsupported_in_the_answer_ask_and_json(
        scripted: tuple[ScriptedServer, Engine], corpus_settings: Settings) -> None:
    server, engine = scripted
    server.script = wrong_number
    answer = engine.answerer.answer(BLEU, mode="generate")
    first, second = answer.sentences
    assert first.support == "unsupported" and first.missing == ["41.0"], first
    assert "41.0 is not in the sentence of" in first.note and "English-to-German" in first.note
    assert second.support == "supported"
    assert answer.mode == "generate" and answer.support_totals()["unsupported"] == 1
    assert "28.4" in " ".join(q.text for q in answer.evidence), "the evidence has the answer"
    url = with_llm(corpus_settings, base_url=server.url)
    data = json.loads(cli(url, "--mode", "generate", "--json", BLEU).stdout)
    assert [s["support"] for s in data["sentences"]] == ["unsupported", "supported"]
    assert data["sentences"][0]["missing"] == ["41.0"]
    assert data["support"] == {"supported": 1, "partial": 0, "unsupported": 1, "uncited": 0}
    out = cli(url, "--mode", "generate", BLEU).stdout
    flagged = [line for line in out.splitlines() if "✗ unsupported" in line]
    assert len(flagged) == 1 and "41.0" in flagged[0] and "41.0 is not in" in flagged[0], out


def test_auto_keeps_an_answer_with_a_supported_sentence(
        scripted: tuple[ScriptedServer, Engine]) -> None:
    server, engine = scripted
    server.script = wrong_number
    answer = engine.answerer.answer(BLEU, mode="auto")
    assert answer.mode == "generate" and answer.degenerate == []


def test_a_looping_stream_is_closed_and_replaced_by_quotes(
        scripted: tuple[ScriptedServer, Engine]) -> None:
    server, engine = scripted
    server.forever = True
    loop = "The big Transformer model is a model for translation tasks. "
    server.script = lambda messages: loop
    answer = engine.answerer.answer(BLEU, mode="auto")
    assert server.hung_up.wait(30), "the client closed the stream: the server stops"
    assert "repetition" in answer.degenerate
    assert answer.model_answer.count("model for translation") == 1, "cut where it repeats"
    assert answer.raw_answer.startswith(loop + loop.strip())
    assert_quotes(answer)


def test_an_echoed_few_shot_example_is_stripped_uncited_and_replaced(
        scripted: tuple[ScriptedServer, Engine]) -> None:
    server, engine = scripted
    echo = ("Q: The cafeteria had 23 apples [2]. If they used 20 to make lunch and bought 6 "
            "more, how many apples do they have? A: The answer is 9.")
    server.script = lambda messages: echo
    generated = engine.answerer.answer(BLEU, mode="generate")
    assert generated.answer == "" and generated.citations == []
    assert "few-shot" in generated.degenerate and generated.raw_answer == echo
    auto = engine.answerer.answer(BLEU, mode="auto")
    assert "few-shot" in auto.degenerate and "cafeteria" not in auto.answer
    assert_quotes(auto)


# -- the real model ----------------------------------------------------------------------

@pytest.mark.llm
def test_real_model_in_auto_mode(corpus_settings: Settings, llm_url: str) -> None:
    """Structure, not wording: every sentence checked, every [n] a passage shown, evidence
    quoted; the model's sampling includes the repetition penalty vLLM accepts."""
    settings = with_llm(corpus_settings, base_url=llm_url, temperature=0.0,
                        repetition_penalty=1.1)
    engine = build_engine(settings)
    answer = engine.answerer.answer(BLEU)
    assert not answer.abstained and answer.model  # any reply, even an empty one
    assert 1 <= len(answer.evidence) <= 3
    if answer.mode == "generate":
        assert answer.sentences and all(s.support in ("supported", "partial", "unsupported",
                                                      "uncited") for s in answer.sentences)
    else:
        assert answer.model_answer is not None and answer.degenerate
        assert_quotes(answer)
    numbers = {n for m in MARKER.finditer(answer.answer) for n in expand(m.group(1))}
    assert numbers <= set(range(1, len(answer.hits) + 1))
    for question in (OFF_TOPIC, *NEAR_TOPIC):  # with a server up: still refused
        refused = engine.answerer.answer(question)
        assert refused.abstained, (question, refused.signal)


def test_eval_scores_the_extract_mode_with_no_server(dead: Settings, tmp_path: Path) -> None:
    """`paperchat eval --answer-mode extract`: answers without a model, with the support
    figures in the report."""
    from paperchat.cli import main
    from tests.helpers import DEV_QUESTIONS

    out = tmp_path / "run"
    code = main(["--data-dir", str(dead.data_dir), "--llm-url", dead.llm.base_url, "eval",
                 str(DEV_QUESTIONS), "--limit", "4", "--answer-mode", "extract", "--out",
                 str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["answer_mode"] == "extract" and report["model"] is None
    assert report["citations"]["supported_share"] == 1.0  # quotes support themselves
    assert report["answers"]["unsupported_numbers"] == 0.0
    assert report["citations"]["validity"] is None  # the model wrote nothing to check
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["answer_mode"] == "extract" and r["evidence"] for r in records
               if not r["abstained"])
    assert "supported_share" in (out / "report.md").read_text()
