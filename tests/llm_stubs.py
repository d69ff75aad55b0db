"""Small real HTTP servers for replies vLLM will not give on demand: 5xx, 401, no /tokenize,
and streams that break off mid-answer (``Break``). Used by the client and failover tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = (200, {"data": [{"id": "m1"}]})


@dataclass(frozen=True)
class Break:
    """A streamed reply that sends ``text`` (server-sent events) and then drops the
    connection before the body is complete, as a server that dies mid-answer does."""

    text: str


Reply = tuple[int, Any] | Break


def sse(*pieces: str, finish: str | None = "stop", usage: int | None = None) -> str:
    """Server-sent events of a chat completion streaming ``pieces``."""
    events = [{"choices": [{"delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    if finish:
        events.append({"choices": [{"delta": {}, "finish_reason": finish}]})
    if usage is not None:
        events.append({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": usage}})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return text + ("data: [DONE]\n\n" if finish else "")


class Canned(ThreadingHTTPServer):
    """Answers each path with a canned reply, or with the next of a list of them (the last
    one repeats); records the headers and JSON bodies of the requests."""

    def __init__(self, routes: dict[str, Reply | list[Reply]]) -> None:
        self.routes = {k: v if isinstance(v, list) else [v] for k, v in routes.items()}
        self.seen: list[dict[str, str]] = []
        self.bodies: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, path: str) -> Reply:
        with self._lock:
            queue = self.routes.get(path)
            if not queue:
                return 404, {"detail": "Not Found"}
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def posted(self, path: str) -> list[Any]:
        """The JSON bodies POSTed to ``path``, in order."""
        return [body for p, body in self.bodies if p == path]

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        super().__exit__(*exc)


class _CannedHandler(BaseHTTPRequestHandler):
    server: Canned

    def _answer(self) -> None:
        self.server.seen.append(dict(self.headers))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.bodies.append((self.path, json.loads(raw) if raw else None))
        reply = self.server.reply(self.path)
        if isinstance(reply, Break):
            data = reply.text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data) + 10_000))  # never all sent
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True
            return
        status, body = reply
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        kind = "text/event-stream" if isinstance(body, str) else "application/json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass
