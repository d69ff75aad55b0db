"""LLMClient against the real vLLM server (``llm_url``), plus failure modes on 127.0.0.1:
a port with nothing listening, a server that accepts and never answers, and small real
HTTP servers (tests/llm_stubs.py) for replies vLLM will not give on demand (5xx, 401, no
/tokenize)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.errors import LLMError, LLMUnavailableError
from core.settings import LLMSettings
from rag.llm import LLMClient
from tests.helpers import free_port
from tests.llm_stubs import MODELS, Canned


def llm_settings(**values: object) -> LLMSettings:
    return LLMSettings.model_validate(values)


QUESTION = [{"role": "user", "content": "Explain in two sentences what a neural network is."}]


@pytest.fixture
def client(llm_url: str) -> Iterator[LLMClient]:
    with LLMClient(llm_settings(base_url=llm_url, temperature=0.0)) as c:
        yield c


# -- the real server ---------------------------------------------------------------------

@pytest.mark.llm
def test_stream_yields_several_pieces(client: LLMClient) -> None:
    stream = client.stream_chat(QUESTION, max_tokens=24, temperature=0.0)
    pieces = list(stream)
    assert len(pieces) >= 3
    assert any(ch.isalpha() for ch in "".join(pieces))
    assert stream.completion_tokens is not None and 0 < stream.completion_tokens <= 24
    assert stream.finish_reason in ("stop", "length")


@pytest.mark.llm
def test_stream_honours_max_tokens_and_stop(client: LLMClient) -> None:
    short = client.stream_chat(QUESTION, max_tokens=3, temperature=0.0)
    list(short)
    assert short.finish_reason == "length" and short.completion_tokens == 3
    stopped = client.stream_chat(QUESTION, max_tokens=40, temperature=0.0, stop=[" "])
    text = "".join(stopped).strip()
    assert text and " " not in text
    assert stopped.finish_reason == "stop"


@pytest.mark.llm
def test_chat_returns_text(client: LLMClient) -> None:
    answer = client.chat(QUESTION, max_tokens=20, temperature=0.0)
    assert sum(ch.isalpha() for ch in answer) >= 5


@pytest.mark.llm
def test_served_model_and_wrong_name(client: LLMClient, llm_url: str) -> None:
    name = client.served_model()
    assert name
    with LLMClient(llm_settings(base_url=llm_url, model=name)) as named:
        assert named.served_model() == name
    with LLMClient(llm_settings(base_url=llm_url, model="no-such-model")) as wrong, \
            pytest.raises(LLMError) as err:
        wrong.served_model()
    message = str(err.value)
    assert "no-such-model" in message and name in message and "paperchat serve-llm" in message


@pytest.mark.llm
def test_max_model_len_comes_from_the_server(llm_url: str) -> None:
    reported = httpx.get(f"{llm_url}/models").json()["data"][0]["max_model_len"]
    with LLMClient(llm_settings(base_url=llm_url, serve_max_model_len=999)) as c:
        assert c.max_model_len() == reported != 999


@pytest.mark.llm
def test_count_tokens_uses_the_tokenizer(client: LLMClient) -> None:
    text = "a " * 100  # 100 tokens in a BPE tokenizer; the len/4 estimate would say 50
    assert 90 <= client.count_tokens(text) <= 110
    assert client.count_tokens("hello world") == 2
    content = QUESTION[0]["content"]
    assert client.count_chat_tokens(QUESTION) > client.count_tokens(content)


@pytest.mark.llm
def test_health(client: LLMClient) -> None:
    assert client.health()


# -- a server that is not there, or never answers -----------------------------------------

def test_dead_server_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with LLMClient(llm_settings(base_url=url)) as c:
        assert not c.health()
        for call in (c.served_model, lambda: list(c.stream_chat(QUESTION)),
                     lambda: c.chat(QUESTION), lambda: c.count_tokens("hi")):
            with pytest.raises(LLMUnavailableError) as err:
                call()
            message = str(err.value)
            assert url in message and "paperchat serve-llm" in message
            assert "refused" in message and "\n" not in message


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and reads requests, but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in conns:
        conn.close()
    listener.close()


def test_server_that_never_answers_times_out(silent_server: str) -> None:
    with LLMClient(llm_settings(base_url=silent_server, timeout_s=0.5)) as c:
        for call in (c.served_model, lambda: list(c.stream_chat(QUESTION))):
            with pytest.raises(LLMUnavailableError) as err:
                call()
            message = str(err.value)
            assert silent_server in message and "no reply within 0.5 s" in message
            assert "paperchat serve-llm" in message


# -- replies vLLM will not give on demand (small real HTTP servers) -----------------------



def test_5xx_is_unavailable() -> None:
    with Canned({"/v1/models": (503, {"error": {"message": "engine is dead"}})}) as srv, \
            LLMClient(llm_settings(base_url=srv.url)) as c, \
            pytest.raises(LLMUnavailableError) as err:
        c.served_model()
    assert "HTTP 503: engine is dead" in str(err.value) and srv.url in str(err.value)


def test_api_key_sent_as_bearer_and_refusal_explained() -> None:
    with Canned({"/v1/models": MODELS}) as srv, \
            LLMClient(llm_settings(base_url=srv.url, api_key="sekrit")) as c:
        assert c.served_model() == "m1"
        assert srv.seen[-1].get("Authorization") == "Bearer sekrit"
    with Canned({"/v1/models": (401, {"error": "Unauthorized"})}) as srv, \
            LLMClient(llm_settings(base_url=srv.url)) as c, pytest.raises(LLMError) as err:
        c.served_model()
    assert "API key" in str(err.value) and not isinstance(err.value, LLMUnavailableError)


def test_without_tokenize_counts_are_estimated_and_context_falls_back() -> None:
    with Canned({"/v1/models": MODELS}) as srv, \
            LLMClient(llm_settings(base_url=srv.url, serve_max_model_len=777)) as c:
        assert c.count_tokens("x" * 40) == 10
        assert c.max_model_len() == 777


@pytest.mark.parametrize("tokenize", [None, (200, {"tokens": [1, 2, 3]})])
def test_chat_count_without_a_vllm_tokenize_is_a_generous_estimate(
        tokenize: tuple[int, Any] | None) -> None:
    from rag.budget import count_chat, estimate_chat

    routes = {"/v1/models": MODELS, **({"/tokenize": tokenize} if tokenize else {})}
    messages = [{"role": "user", "content": "The Transformer reached 28.4 BLEU [1]. " * 20}]
    with Canned(routes) as srv, LLMClient(llm_settings(base_url=srv.url)) as c:
        assert c.count_chat_tokens(messages) is None  # the server cannot count
        assert count_chat(c, messages) > estimate_chat(messages)  # so a prompt fits


def test_error_event_mid_stream_is_raised() -> None:
    events = ('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
              'data: {"error":{"message":"out of KV cache"}}\n\n')
    with Canned({"/v1/models": MODELS, "/v1/chat/completions": (200, events)}) as srv, \
            LLMClient(llm_settings(base_url=srv.url)) as c:
        stream = c.stream_chat(QUESTION)
        assert next(stream) == "Hel"
        with pytest.raises(LLMError, match="out of KV cache"):
            next(stream)
