"""Several model servers in llm.base_url: requests spread round robin, a failed replica is
passed over and the request goes to the next, a stream that breaks before its first token
is sent again and one that breaks mid-answer is continued elsewhere. First against small
real HTTP servers (tests/llm_stubs.py) that fail on demand, then with two real vLLM servers
(the suite's and one started here), the one started here killed during a run of questions."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from core.errors import ConfigError, LLMError, LLMUnavailableError
from core.settings import LLMSettings, load_settings
from rag.llm import LLMClient
from rag.replicas import Replicas
from serve.server import start_server
from tests.helpers import DEV_QUESTIONS, free_port, make_settings
from tests.llm_stubs import MODELS, Break, Canned, sse

QUESTION = [{"role": "user", "content": "What is attention?"}]
CHAT = "/v1/chat/completions"


def client_for(*urls: str, **values: object) -> LLMClient:
    return LLMClient(LLMSettings.model_validate({"base_url": ",".join(urls), **values}))


def reply(text: str) -> tuple[int, dict[str, object]]:
    return 200, {"choices": [{"message": {"content": text}}]}


# -- settings ------------------------------------------------------------------------------

def test_base_url_takes_a_toml_list_or_commas(tmp_path: Path) -> None:
    toml = tmp_path / "paperchat.toml"
    toml.write_text('[llm]\nbase_url = ["http://a:8000/v1/", "http://b:8000/v1"]\n')
    assert load_settings(environ={}, config_file=toml).llm.urls == [
        "http://a:8000/v1", "http://b:8000/v1"]
    env = {"PAPERCHAT_LLM_BASE_URL": "http://a:1/v1, http://b:2/v1"}
    assert load_settings(environ=env).llm.urls == ["http://a:1/v1", "http://b:2/v1"]
    assert load_settings(cli={"llm": {"base_url": "http://c/v1"}}, environ={}).llm.urls == [
        "http://c/v1"]
    with pytest.raises(ConfigError, match=r"llm\.base_url.*not an http"):
        load_settings(environ={"PAPERCHAT_LLM_BASE_URL": "http://a/v1,a-typo/v1"})
    with pytest.raises(ConfigError, match=r"llm\.base_url.*at least one URL"):
        load_settings(environ={"PAPERCHAT_LLM_BASE_URL": " , "})


def test_order_is_round_robin_and_a_failed_replica_waits_its_cooldown() -> None:
    now = [100.0]
    pool = Replicas(["a", "b", "c"], cooldown_s=30, clock=lambda: now[0])
    assert [pool.order()[0].url for _ in range(4)] == ["a", "b", "c", "a"]
    a, b, c = pool.items
    pool.failed(b)
    assert [r.url for r in pool.order()] == ["c", "a", "b"]  # from b's turn on; b last
    now[0] += 1
    pool.failed(a)
    now[0] += 1
    pool.failed(c)  # all down: still all tried, soonest back first
    assert [r.url for r in pool.order()] == ["b", "a", "c"]
    now[0] += 28.5  # b's cooldown is over, not a's or c's
    assert pool.order()[0].url == "b"
    pool.succeeded(a)
    assert a.down_until == 0.0 and pool.order()[0] in (a, b)


# -- replicas that fail on demand ----------------------------------------------------------

def test_requests_are_spread_across_replicas() -> None:
    with Canned({"/v1/models": MODELS, CHAT: reply("A")}) as a, \
            Canned({"/v1/models": MODELS, CHAT: reply("B")}) as b, \
            client_for(a.url, b.url) as c:
        answers = [c.chat(QUESTION) for _ in range(4)]
    assert sorted(answers) == ["A", "A", "B", "B"]
    assert len(a.posted(CHAT)) == len(b.posted(CHAT)) == 2


@pytest.mark.parametrize("failure", ["refused", "5xx"])
def test_a_dead_replica_is_passed_over(failure: str) -> None:
    with Canned({"/v1/models": (503, {"error": "engine dead"}),
                 CHAT: (502, {"error": "bad gateway"})}) as sick, \
            Canned({"/v1/models": MODELS, CHAT: reply("ok"),
                    "/tokenize": (200, {"count": 7})}) as good:
        dead = sick.url if failure == "5xx" else f"http://127.0.0.1:{free_port()}/v1"
        with client_for(dead, good.url) as c:
            assert c.served_model() == "m1"
            assert [c.chat(QUESTION) for _ in range(3)] == ["ok"] * 3
            assert c.count_tokens("seven tokens of text") == 7
        assert len(good.posted(CHAT)) == 3
        if failure == "5xx":  # tried once, then passed over for the cooldown
            assert len(sick.bodies) == 1


def test_every_replica_down_names_them_all() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with client_for(*urls) as c, pytest.raises(LLMUnavailableError) as err:
        c.chat(QUESTION)
    message = str(err.value)
    assert all(u in message for u in urls) and "every replica failed" in message
    assert message.count("connection refused") == 2 and "\n" not in message
    assert "paperchat serve-llm" in message


def test_stream_broken_before_its_first_token_is_sent_again() -> None:
    with Canned({"/v1/models": MODELS, CHAT: Break(": keep-alive\n\n")}) as a, \
            Canned({"/v1/models": MODELS, CHAT: (200, sse("Hel", "lo", usage=2))}) as b, \
            client_for(a.url, b.url) as c:
        stream = c.stream_chat(QUESTION, max_tokens=10)
        assert list(stream) == ["Hel", "lo"]
        assert stream.failovers == 0 and stream.server == b.url
        assert stream.completion_tokens == 2 and stream.prompt_tokens == 50
        assert b.posted(CHAT)[0] == a.posted(CHAT)[0]  # the same request, unchanged


def test_stream_broken_mid_answer_is_continued_on_another_replica() -> None:
    broken = sse("The ", "answer", finish=None)  # two tokens, then the server dies
    with Canned({"/v1/models": MODELS, CHAT: Break(broken)}) as a, \
            Canned({"/v1/models": MODELS, CHAT: (200, sse(" is", " 42.", usage=2))}) as b, \
            client_for(a.url, b.url) as c:
        stream = c.stream_chat(QUESTION, max_tokens=10, temperature=0.0)
        assert "".join(stream) == "The answer is 42."  # nothing repeated, nothing lost
        assert stream.failovers == 1 and stream.server == b.url
        assert stream.finish_reason == "stop" and stream.completion_tokens == 4
        assert stream.prompt_tokens is None  # the caller's own count stands
        first, cont = a.posted(CHAT)[0], b.posted(CHAT)[0]
    assert cont["messages"] == [*QUESTION, {"role": "assistant", "content": "The answer"}]
    assert cont["continue_final_message"] is True and cont["add_generation_prompt"] is False
    assert cont["max_tokens"] == 8 and cont["temperature"] == first["temperature"] == 0.0
    assert "continue_final_message" not in first


def test_a_stream_cut_after_its_last_event_is_whole() -> None:
    whole = sse("Done", ".", usage=2).removesuffix("data: [DONE]\n\n")  # cut before [DONE]
    with Canned({"/v1/models": MODELS, CHAT: Break(whole)}) as a, \
            Canned({"/v1/models": MODELS, CHAT: (200, sse("never"))}) as b, \
            client_for(a.url, b.url) as c:
        stream = c.stream_chat(QUESTION)
        assert "".join(stream) == "Done." and stream.finish_reason == "stop"
        assert stream.failovers == 0 and not b.posted(CHAT)


def test_a_server_that_cannot_continue_says_so() -> None:
    broken = sse("Half", finish=None)
    refusal = (400, {"error": {"message": "Unknown field continue_final_message"}})
    with Canned({"/v1/models": MODELS, CHAT: Break(broken)}) as a, \
            Canned({"/v1/models": MODELS, CHAT: refusal}) as b, \
            client_for(a.url, b.url) as c:
        stream = c.stream_chat(QUESTION)
        assert next(stream) == "Half"
        with pytest.raises(LLMError) as err:
            next(stream)
    message = str(err.value)
    assert "broke off" in message and b.url in message and "continue_final_message" in message
    assert not isinstance(err.value, LLMUnavailableError)


def test_every_replica_breaking_mid_answer_is_unavailable() -> None:
    with Canned({"/v1/models": MODELS, CHAT: Break(sse("a", finish=None))}) as a, \
            Canned({"/v1/models": MODELS, CHAT: Break(sse("b", finish=None))}) as b, \
            client_for(a.url, b.url) as c:
        stream = c.stream_chat(QUESTION)
        pieces = []
        with pytest.raises(LLMUnavailableError, match="every replica failed mid-answer"):
            pieces.extend(stream)
    assert pieces == ["a", "b"]  # the text shown stays; the error follows it


# -- two real vLLM servers, one killed during a run of questions -------------------------

def served_model_folder(llm_url: str) -> str:
    from tests.ui_helpers import served_model_path

    return served_model_path(llm_url)


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.extra_server
def test_no_question_lost_when_one_of_two_servers_dies(llm_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", llm={
        "serve_port": 0, "serve_model": served_model_folder(llm_url),
        "failover_cooldown_s": 0})  # the dead one is tried again each time: refused
    rows = [json.loads(line) for line in DEV_QUESTIONS.read_text().splitlines() if line]
    questions = [str(r["question"]) for r in rows[:6]]
    # A is a server of its own (killed below); B is the suite's server, left running.
    with start_server(settings) as a:
        llm = settings.llm.model_copy(update={"base_url": f"{a.url},{llm_url}"})
        answers: list[str] = []
        moved = None
        with LLMClient(llm) as client:
            for question in questions:
                stream = client.stream_chat([{"role": "user", "content": question}],
                                            max_tokens=40, temperature=0.0)
                pieces = [next(stream)]
                if a.alive() and stream.server == a.url:  # mid-answer on A: kill A's group
                    os.killpg(a.pid, signal.SIGKILL)
                    a.process.wait()
                    moved = stream
                pieces.extend(stream)
                assert stream.finish_reason in ("stop", "length"), question
                answers.append("".join(pieces))
            assert not a.alive() and client.health()  # B still answers
    assert len(answers) == len(questions)
    assert all(sum(ch.isalpha() for ch in text) >= 5 for text in answers), answers
    assert moved is not None and moved.failovers == 1 and moved.server == llm_url
