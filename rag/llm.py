"""Client of the model server: an OpenAI-compatible API (vLLM) spoken with httpx.

One ``LLMClient`` per process, handed down (it holds the HTTP connection pool and
caches what the server serves). Every failure becomes a ``core.errors`` error:

* connection refused, timeouts (connect or read), dropped connections and HTTP 5xx:
  ``LLMUnavailableError`` (names the URL and `paperchat serve-llm`);
* anything else the server refuses (4xx, a wrong model name, an error mid-stream):
  ``LLMError`` with the server's own message.

``llm.base_url`` may name several replicas of one model (``rag/replicas.py``). Each request
goes to the next one round robin; on an ``LLMUnavailableError`` it is sent to the next
replica, so the caller sees an error only when every replica failed. A stream that breaks
before its first token is simply sent again elsewhere. One that breaks mid-answer is
*continued* on another replica: the text already streamed goes back as the start of the
assistant's message (vLLM's ``continue_final_message``), so the reader sees the answer
go on from where it stopped, after a pause, with nothing repeated (``ChatStream.failovers``
counts such moves). A server that cannot continue a message (not vLLM) ends the stream
with an ``LLMError`` that says so; the text shown so far stays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from core.errors import LLMError, LLMUnavailableError
from core.settings import CPU_CONTEXT, LLMSettings
from rag.replicas import Replica, Replicas

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
T = TypeVar("T")
Events = Callable[[Replica, dict[str, Any]], Iterator[dict[str, Any]]]


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token) for servers without /tokenize."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _error_text(body: Any) -> str:
    """The message in an OpenAI/vLLM error body ({"error": {"message": ...}} and kin)."""
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or err
    return " ".join(str(err).split())[:300]


def _server_message(resp: httpx.Response) -> str:
    """The error message in a reply body (JSON or plain text), on one line."""
    try:
        return _error_text(resp.json()) or resp.reason_phrase
    except ValueError:
        return " ".join(resp.text.split())[:300] or resp.reason_phrase


class ChatStream(Iterator[str]):
    """Text pieces of a streamed chat completion; after the end it knows why it stopped.

    The request is sent on the first ``next()``; errors are raised from there. Use it as a
    context manager (or call ``close()``) when you may stop reading before the end.
    ``finish_reason`` ('stop', 'length', ...) and token usage are set when the stream ends;
    ``server`` is the replica streaming it (at the end: the one that finished it) and
    ``failovers`` the times it was sent on to another replica mid-answer (the prompt count
    is then left to the caller's own).
    """

    def __init__(self, client: LLMClient, body: dict[str, Any], events: Events) -> None:
        self._client = client
        self._body = body
        self._events = events
        self._shown: list[str] = []
        self._pieces = self._read()
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.server: str | None = None
        self.failovers = 0

    def _read(self) -> Generator[str, None, None]:
        errors: list[LLMUnavailableError] = []
        for replica in self._client.replicas.order():
            if self._shown and len(self._shown) >= self._body["max_tokens"]:
                self.finish_reason, self.completion_tokens = "length", len(self._shown)
                return  # it broke off after its last token: nothing is left to ask for
            body = self._body if not self._shown else continuation(self._body, self._shown)
            try:
                yield from self._read_one(replica, body)
            except LLMUnavailableError as err:
                self._client.replicas.failed(replica)
                errors.append(err)
                continue
            self._client.replicas.succeeded(replica)
            return
        raise self._client.all_failed(errors, mid_answer=bool(self._shown))

    def _read_one(self, replica: Replica, body: dict[str, Any]) -> Generator[str, None, None]:
        """One request's pieces; LLMUnavailableError if the stream breaks before its end."""
        before = len(self._shown)
        self.failovers += bool(before)
        self.server = replica.url
        finished = False
        try:
            for event in self._events(replica, body):
                if "error" in event:
                    raise LLMError(f"The model server failed mid-answer: {_error_text(event)}")
                if event.get("usage"):
                    self._count(event["usage"], before)
                for choice in event.get("choices") or []:
                    finished = finished or bool(choice.get("finish_reason"))
                    self.finish_reason = choice.get("finish_reason") or self.finish_reason
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        self._shown.append(piece)
                        yield piece
        except LLMUnavailableError:
            if finished:
                return  # cut after its last event (before [DONE]): the answer is whole
            raise
        except LLMError as err:
            if not before:
                raise
            raise LLMError(f"The answer broke off and the model server at {replica.url} "
                           f"could not continue it: {err.message}",
                           "Use vLLM replicas (they continue a broken-off answer).") from err
        if not finished:
            raise LLMUnavailableError(replica.url, "the answer stream broke off")

    def _count(self, usage: dict[str, Any], before: int) -> None:
        done = usage.get("completion_tokens")
        if isinstance(done, int):
            self.completion_tokens = before + done  # pieces streamed before are ~tokens
        if not before:
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop reading (closes the HTTP response); call it when leaving a stream early."""
        self._pieces.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def continuation(body: dict[str, Any], shown: list[str]) -> dict[str, Any]:
    """The request that continues a broken-off answer: the text streamed so far becomes the
    start of the assistant's message, which the server carries on (vLLM's
    ``continue_final_message``); the completion keeps what is left of ``max_tokens``."""
    messages = [*body["messages"], {"role": "assistant", "content": "".join(shown)}]
    return {**body, "messages": messages, "max_tokens": body["max_tokens"] - len(shown),
            "continue_final_message": True, "add_generation_prompt": False}


class LLMClient:
    """Talks to the server(s) at ``settings.base_url`` (e.g. http://127.0.0.1:8000/v1)."""

    def __init__(self, settings: LLMSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.replicas = Replicas(settings.urls, settings.failover_cooldown_s)
        self.base_url = ", ".join(r.url for r in self.replicas.items)  # for messages
        self._timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=self._timeout)
        self._headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._model_entry: dict[str, Any] | None = None
        self._tokenize_supported = True

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- HTTP plumbing ---------------------------------------------------------------------
    def _unavailable(self, url: str, err: httpx.TransportError) -> LLMUnavailableError:
        if isinstance(err, httpx.ConnectTimeout):
            detail = f"no connection within {self.settings.connect_timeout_s:g} s"
        elif isinstance(err, httpx.TimeoutException):
            detail = f"no reply within {self.settings.timeout_s:g} s"
        elif isinstance(err, httpx.ConnectError):
            refused = "refused" in str(err).lower()
            detail = "connection refused" if refused else f"cannot connect: {err}"
        else:
            detail = f"{type(err).__name__}: {err}"
        return LLMUnavailableError(url, detail)

    def all_failed(self, errors: list[LLMUnavailableError],
                   mid_answer: bool = False) -> LLMUnavailableError:
        """The error when every replica failed: the one replica's own, or all of them."""
        if len(errors) == 1 and not mid_answer:
            return errors[0]
        details = "; ".join(f"{e.url}: {e.detail}" for e in errors)
        what = "every replica failed mid-answer" if mid_answer else "every replica failed"
        return LLMUnavailableError(self.base_url, f"{what}: {details}")

    def _on_replicas(self, call: Callable[[Replica], T], rotate: bool = False) -> T:
        """``call`` on each replica in turn until one does not fail as unavailable
        (``rotate``: a generation request, which takes the next replica's turn)."""
        errors: list[LLMUnavailableError] = []
        for replica in self.replicas.order(rotate):
            try:
                result = call(replica)
            except LLMUnavailableError as err:
                self.replicas.failed(replica)
                errors.append(err)
                continue
            self.replicas.succeeded(replica)
            return result
        raise self.all_failed(errors)

    def _check(self, url: str, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        message = _server_message(resp)
        if resp.status_code >= 500:
            raise LLMUnavailableError(url, f"HTTP {resp.status_code}: {message}")
        if resp.status_code in (401, 403):
            raise LLMError(f"The model server at {url} refused the API key "
                           f"(HTTP {resp.status_code}).",
                           "Set llm.api_key (PAPERCHAT_LLM_API_KEY) to the server's key.")
        raise LLMError(f"The model server at {url} refused the request "
                       f"(HTTP {resp.status_code}): {message}")

    def _send(self, replica: Replica, method: str, path: str, json_body: Any = None,
              root: bool = False) -> httpx.Response:
        """One request to one replica (``path`` under /v1, or beside it with ``root``)."""
        url = f"{replica.root if root else replica.url}{path}"
        try:
            resp = self._http.request(method, url, json=json_body, headers=self._headers,
                                      timeout=self._timeout)
        except httpx.TransportError as err:
            raise self._unavailable(replica.url, err) from err
        return resp

    def _request(self, method: str, path: str, json_body: Any = None,
                 rotate: bool = False) -> httpx.Response:
        """A request under /v1, failing over across the replicas."""
        def call(replica: Replica) -> httpx.Response:
            resp = self._send(replica, method, path, json_body)
            self._check(replica.url, resp)
            return resp

        return self._on_replicas(call, rotate)

    def _sse_events(self, replica: Replica, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events of a streamed completion from one replica, as JSON objects."""
        try:
            with self._http.stream("POST", f"{replica.url}/chat/completions", json=body,
                                   headers=self._headers, timeout=self._timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(replica.url, resp)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, keep-alives
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        yield json.loads(data)
                    except ValueError as err:
                        raise LLMError(f"The model server at {replica.url} sent a bad "
                                       f"stream event: {data[:200]!r}") from err
        except httpx.TransportError as err:
            raise self._unavailable(replica.url, err) from err

    # -- what the server serves ------------------------------------------------------------
    def health(self) -> bool:
        """True when a server answers (vLLM's /health, else /v1/models) at any replica."""
        return any(self._replica_health(r) for r in self.replicas.items)

    def _replica_health(self, replica: Replica) -> bool:
        quick = httpx.Timeout(min(5.0, self.settings.timeout_s),
                              connect=self.settings.connect_timeout_s)
        for url in (f"{replica.root}/health", f"{replica.url}/models"):
            try:
                resp = self._http.get(url, headers=self._headers, timeout=quick)
            except httpx.TransportError:
                return False
            if resp.status_code != 404:
                return resp.status_code == 200
        return False

    def _served_entry(self) -> dict[str, Any]:
        if self._model_entry is not None:
            return self._model_entry
        entries = self._request("GET", "/models").json().get("data") or []
        ids = [str(e.get("id")) for e in entries]
        if not entries:
            raise LLMError(f"The model server at {self.base_url} serves no model.",
                           "Restart it with `paperchat serve-llm`.")
        wanted = self.settings.model
        if wanted and wanted not in ids:
            raise LLMError(
                f"The model server at {self.base_url} serves {', '.join(ids)}, not {wanted!r} "
                "(llm.model).",
                "Start the right one with `paperchat serve-llm`, or set llm.model to '' "
                "to use what it serves.",
            )
        self._model_entry = entries[ids.index(wanted)] if wanted else entries[0]
        return self._model_entry

    def served_model(self) -> str:
        """The model name requests use: llm.model if the server serves it, else its first.
        Replicas must serve the same name (`paperchat serve-llm` names it after the model)."""
        return str(self._served_entry()["id"])

    def max_model_len(self) -> int:
        """Context length in tokens (vLLM reports it; else llm.serve_max_model_len, else
        2,048)."""
        value = self._served_entry().get("max_model_len")
        if isinstance(value, int) and value > 0:
            return value
        return self.settings.serve_max_model_len or CPU_CONTEXT

    # -- tokens ----------------------------------------------------------------------------
    def _tokenize(self, body: dict[str, Any]) -> int | None:
        """Token count from vLLM's /tokenize, or None when the server has no such endpoint."""
        if not self._tokenize_supported:
            return None
        body = {"model": self.served_model(), **body}

        def call(replica: Replica) -> int | None:
            resp = self._send(replica, "POST", "/tokenize", body, root=True)
            if resp.status_code in (404, 405):
                return None
            self._check(replica.url, resp)
            count = resp.json().get("count")
            return count if isinstance(count, int) else None  # e.g. llama.cpp's /tokenize

        count = self._on_replicas(call)
        if count is None:
            self._tokenize_supported = False
        return count

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the served model's tokenizer (len/4 if it cannot say)."""
        count = self._tokenize({"prompt": text, "add_special_tokens": False})
        return estimate_tokens(text) if count is None else count

    def count_chat_tokens(self, messages: Sequence[Message]) -> int | None:
        """Prompt tokens of a chat, chat template included; None where the server cannot
        count (the prompt budget then estimates)."""
        return self._tokenize({"messages": list(messages), "add_generation_prompt": True})

    # -- chat ------------------------------------------------------------------------------
    def _chat_body(self, messages: Sequence[Message], max_tokens: int | None,
                   temperature: float | None, stop: Sequence[str] | None,
                   stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model(),
            "messages": list(messages),
            "max_tokens": self.settings.max_tokens if max_tokens is None else max_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
            "stream": stream,
        }
        if stop:
            body["stop"] = list(stop)
        if self.settings.frequency_penalty:
            body["frequency_penalty"] = self.settings.frequency_penalty
        if self.settings.repetition_penalty != 1.0:  # vLLM's; not in OpenAI's API
            body["repetition_penalty"] = self.settings.repetition_penalty
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int | None = None,
                    temperature: float | None = None,
                    stop: Sequence[str] | None = None) -> ChatStream:
        """Stream the answer as text pieces (defaults: llm.max_tokens, llm.temperature)."""
        body = self._chat_body(messages, max_tokens, temperature, stop, stream=True)
        return ChatStream(self, body, self._sse_events)

    def chat(self, messages: Sequence[Message], *, max_tokens: int | None = None,
             temperature: float | None = None, stop: Sequence[str] | None = None) -> str:
        """The whole answer in one reply (no streaming)."""
        body = self._chat_body(messages, max_tokens, temperature, stop, stream=False)
        reply = self._request("POST", "/chat/completions", body, rotate=True).json()
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as err:
            raise LLMError(f"The model server at {self.base_url} sent a reply without a "
                           f"message: {str(reply)[:200]}") from err
