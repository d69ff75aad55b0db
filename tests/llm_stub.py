"""A scripted model server: a real HTTP server on 127.0.0.1 speaking the part of the
OpenAI API the client uses (/v1/models, /tokenize, streamed /v1/chat/completions), whose
answer is written by a function of the prompt. For the answers a real model will not give
on demand: one that loops forever, one that echoes a few-shot example, one that states a
wrong number. It records the requests and whether the client hung up mid-stream."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[[list[dict[str, str]]], str]
MAX_REPEATS = 5000  # "forever" ends somewhere, even for a client that never hangs up
SOURCE = re.compile(r'<source n="(\d+)"[^>]*>\n(.*?)\n</source>', re.DOTALL)


def source_number(messages: list[dict[str, str]], *needles: str) -> int:
    """The number of the first source in the prompt holding every needle (0 if none)."""
    user = messages[-1]["content"]
    for m in SOURCE.finditer(user):
        if all(x in " ".join(m.group(2).split()) for x in needles):
            return int(m.group(1))
    return 0


@dataclass
class ScriptedServer:
    script: Script
    forever: bool = False  # repeat the scripted text until the client hangs up
    requests: list[dict[str, Any]] = field(default_factory=list)
    hung_up: threading.Event = field(default_factory=threading.Event)
    pieces_sent: int = 0
    url: str = ""


def _handler(state: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _json(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.endswith("/models"):
                self._json({"data": [{"id": "scripted", "max_model_len": 2048}]})
            else:
                self._json({"status": "ok"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.endswith("/tokenize"):
                self._json({"count": len(json.dumps(body)) // 4})
                return
            state.requests.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            text = state.script(body["messages"])
            try:
                for piece in self._pieces(text):
                    event = {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                    state.pieces_sent += 1
                end = {"choices": [{"delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 100, "completion_tokens": state.pieces_sent}}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                state.hung_up.set()

        @staticmethod
        def _pieces(text: str) -> Iterator[str]:
            for _ in range(MAX_REPEATS if state.forever else 1):
                for i in range(0, len(text), 5):
                    yield text[i:i + 5]
                time.sleep(0.002)

    return Handler


@contextmanager
def scripted_server(script: Script, forever: bool = False) -> Iterator[ScriptedServer]:
    state = ScriptedServer(script, forever)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
