"""Client of the model server: an OpenAI-compatible API (vLLM) spoken with httpx.

One ``LLMClient`` per process, handed down (it holds the HTTP connection pool and
caches what the server serves). Every failure becomes a ``core.errors`` error:

* connection refused, timeouts (connect or read), dropped connections and HTTP 5xx:
  ``LLMUnavailableError`` (names the URL and `paperchat serve-llm`);
* anything else the server refuses (4xx, a wrong model name, an error mid-stream):
  ``LLMError`` with the server's own message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Iterator, Sequence
from types import TracebackType
from typing import Any

import httpx

from core.errors import LLMError, LLMUnavailableError
from core.settings import LLMSettings

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


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
    ``finish_reason`` ('stop', 'length', ...) and token usage are set when the stream ends.
    """

    def __init__(self, events: Iterator[dict[str, Any]]) -> None:
        self._events = events
        self._pieces = self._read()
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def _read(self) -> Generator[str, None, None]:
        for event in self._events:
            if "error" in event:
                raise LLMError(f"The model server failed mid-answer: {_error_text(event)}")
            usage = event.get("usage") or {}
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
            for choice in event.get("choices") or []:
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop reading (closes the HTTP response); call it when leaving a stream early."""
        self._pieces.close()
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LLMClient:
    """Talks to the server at ``settings.base_url`` (e.g. http://127.0.0.1:8000/v1)."""

    def __init__(self, settings: LLMSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        # vLLM serves /health and /tokenize beside /v1, not under it.
        self.root_url = self.base_url.removesuffix("/v1")
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
    def _unavailable(self, err: httpx.TransportError) -> LLMUnavailableError:
        if isinstance(err, httpx.ConnectTimeout):
            detail = f"no connection within {self.settings.connect_timeout_s:g} s"
        elif isinstance(err, httpx.TimeoutException):
            detail = f"no reply within {self.settings.timeout_s:g} s"
        elif isinstance(err, httpx.ConnectError):
            refused = "refused" in str(err).lower()
            detail = "connection refused" if refused else f"cannot connect: {err}"
        else:
            detail = f"{type(err).__name__}: {err}"
        return LLMUnavailableError(self.base_url, detail)

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        message = _server_message(resp)
        if resp.status_code >= 500:
            raise LLMUnavailableError(self.base_url, f"HTTP {resp.status_code}: {message}")
        if resp.status_code in (401, 403):
            raise LLMError(f"The model server at {self.base_url} refused the API key "
                           f"(HTTP {resp.status_code}).",
                           "Set llm.api_key (PAPERCHAT_LLM_API_KEY) to the server's key.")
        raise LLMError(f"The model server at {self.base_url} refused the request "
                       f"(HTTP {resp.status_code}): {message}")

    def _request(self, method: str, url: str, json_body: Any = None,
                 timeout: httpx.Timeout | None = None) -> httpx.Response:
        try:
            resp = self._http.request(method, url, json=json_body, headers=self._headers,
                                      timeout=timeout or self._timeout)
        except httpx.TransportError as err:
            raise self._unavailable(err) from err
        self._check(resp)
        return resp

    def _sse_events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events of a streamed completion, as JSON objects."""
        try:
            with self._http.stream("POST", f"{self.base_url}/chat/completions", json=body,
                                   headers=self._headers, timeout=self._timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, keep-alives
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        yield json.loads(data)
                    except ValueError as err:
                        raise LLMError(f"The model server at {self.base_url} sent a bad "
                                       f"stream event: {data[:200]!r}") from err
        except httpx.TransportError as err:
            raise self._unavailable(err) from err

    # -- what the server serves ------------------------------------------------------------
    def health(self) -> bool:
        """True when the server answers (vLLM's /health, else /v1/models)."""
        quick = httpx.Timeout(min(5.0, self.settings.timeout_s),
                              connect=self.settings.connect_timeout_s)
        for url in (f"{self.root_url}/health", f"{self.base_url}/models"):
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
        entries = self._request("GET", f"{self.base_url}/models").json().get("data") or []
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
        """The model name requests use: llm.model if the server serves it, else its first."""
        return str(self._served_entry()["id"])

    def max_model_len(self) -> int:
        """Context length in tokens (vLLM reports it; else llm.serve_max_model_len)."""
        value = self._served_entry().get("max_model_len")
        return int(value) if isinstance(value, int) and value > 0 else (
            self.settings.serve_max_model_len)

    # -- tokens ----------------------------------------------------------------------------
    def _tokenize(self, body: dict[str, Any]) -> int | None:
        """Token count from vLLM's /tokenize, or None when the server has no such endpoint."""
        if not self._tokenize_supported:
            return None
        body = {"model": self.served_model(), **body}
        try:
            resp = self._http.post(f"{self.root_url}/tokenize", json=body,
                                   headers=self._headers, timeout=self._timeout)
        except httpx.TransportError as err:
            raise self._unavailable(err) from err
        if resp.status_code in (404, 405):
            self._tokenize_supported = False
            return None
        self._check(resp)
        count = resp.json().get("count")
        if not isinstance(count, int):  # another server's /tokenize (e.g. llama.cpp's)
            self._tokenize_supported = False
            return None
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
        return ChatStream(self._sse_events(
            self._chat_body(messages, max_tokens, temperature, stop, stream=True)))

    def chat(self, messages: Sequence[Message], *, max_tokens: int | None = None,
             temperature: float | None = None, stop: Sequence[str] | None = None) -> str:
        """The whole answer in one reply (no streaming)."""
        body = self._chat_body(messages, max_tokens, temperature, stop, stream=False)
        reply = self._request("POST", f"{self.base_url}/chat/completions", body).json()
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as err:
            raise LLMError(f"The model server at {self.base_url} sent a reply without a "
                           f"message: {str(reply)[:200]}") from err
