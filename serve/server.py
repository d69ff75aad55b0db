"""Start, watch and stop the model server (vLLM's OpenAI-compatible API) as a child process.

This is the one lifecycle of the model server: `paperchat serve-llm` calls :func:`serve`
(the scripts start that and wait for its ready line or ready file); tests and benchmarks call
:func:`start_server`, which returns once the server answers ``/health`` and ``/v1/models``.
Port 0 picks a free port (another is tried if a process takes it before vLLM binds it).
What is started is decided in ``serve/plan.py``.

The server runs in its own process group (vLLM forks an engine and a worker process);
stopping sends SIGTERM to the whole group, then SIGKILL if it lingers, so no orphan is left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import httpx

from core.errors import LLMError
from core.fsio import atomic_write_text
from core.settings import Settings
from serve.plan import SETUP_HINT, ServePlan, child_env, command, log_tail, plan

STOP_GRACE_S = 30.0
PORT_TRIES = 3  # port 0: fresh free ports tried when another process takes the first
READY_LINE = "paperchat serve-llm: ready {url}"


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def connect_host(host: str) -> str:
    """The address to reach a server bound to ``host`` (wildcards mean loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


@dataclass
class LLMServer:
    """A running vLLM server; ``stop()`` (or leaving the ``with`` block) ends it."""

    url: str  # OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (fits settings.llm.base_url)
    model: str  # the served model name
    log_path: Path
    process: subprocess.Popen[bytes]
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after ``grace_s``; return the code."""
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        atexit.unregister(self.stop)
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
        _wait_group_gone(self.process.pid, grace_s)
        return self.process.returncode

    def __enter__(self) -> LLMServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, grace_s: float) -> None:
    """Wait for the engine and worker processes of the group; SIGKILL stragglers."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    _signal_group(pgid, signal.SIGKILL)


def _launch(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def server_answers(http: httpx.Client, base_url: str) -> bool:
    """The one health check: vLLM's ``/health`` (where a server has it) and ``/v1/models``
    answer (401 counts: the server is up and wants a key)."""
    base = base_url.rstrip("/")
    try:
        health = http.get(f"{base.removesuffix('/v1')}/health")
        if health.status_code not in (200, 404):
            return False
        return http.get(f"{base}/models").status_code in (200, 401)
    except httpx.TransportError:
        return False


class _PortTaken(LLMError):
    """vLLM could not bind the port it was given (another process took it first)."""


def wait_healthy(server: LLMServer, timeout_s: float) -> None:
    """Poll until the server answers, or stop it and raise LLMError with the log's last lines."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
        while time.monotonic() < deadline:
            if not server.alive():
                tail = log_tail(server.log_path)
                hint = SETUP_HINT if "No module named" in tail else f"See {server.log_path}."
                error = _PortTaken if "address already in use" in tail.lower() else LLMError
                raise error(f"The model server exited with code {server.process.returncode} "
                            f"before it was ready: {tail}", hint)
            if server_answers(http, server.url):
                return
            time.sleep(0.5)
    server.stop()
    raise LLMError(f"The model server was not ready after {timeout_s:.0f} s: "
                   f"{log_tail(server.log_path)}",
                   f"See {server.log_path}; raise llm.serve_startup_timeout_s if it is slow.")


def free_port(host: str) -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host or "0.0.0.0", 0))
        return int(sock.getsockname()[1])


def _start_on(p: ServePlan, settings: Settings, port: int,
              env: dict[str, str] | None) -> LLMServer:
    host = connect_host(settings.llm.serve_host)
    log_path = settings.data_dir / "logs" / f"vllm-{port}.log"
    process = _launch(command(p, settings, port), {**child_env(p), **(env or {})}, log_path)
    server = LLMServer(f"http://{host}:{port}/v1", p.served_name, log_path, process)
    atexit.register(server.stop)
    try:
        wait_healthy(server, settings.llm.serve_startup_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def start_server(settings: Settings, port: int | None = None,
                 env: dict[str, str] | None = None) -> LLMServer:
    """Start vLLM for settings.llm.serve_* and return once it is healthy. ``port`` (default
    llm.serve_port) 0 picks a free port; the server's ``url`` says which. ``env`` adds to
    vLLM's environment (e.g. VLLM_SERVER_DEV_MODE=1 for a benchmark's cache resets)."""
    port = settings.llm.serve_port if port is None else port
    host = connect_host(settings.llm.serve_host)
    if port and port_open(host, port):
        raise LLMError(f"Port {port} on {host} is already in use.",
                       "Stop what listens there, set llm.serve_port / --port, or use --port 0.")
    p = plan(settings)
    for attempt in range(1 if port else PORT_TRIES):
        try:
            return _start_on(p, settings, port or free_port(settings.llm.serve_host), env)
        except _PortTaken:
            if port or attempt == PORT_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def first_answering(settings: Settings) -> str | None:
    """The first URL of llm.base_url where a server answers, or None."""
    with httpx.Client(timeout=httpx.Timeout(3.0, connect=settings.llm.connect_timeout_s)) as http:
        return next((u for u in settings.llm.urls if server_answers(http, u)), None)


def say(text: str) -> None:
    """Print a line at once (the ready line is read from a pipe or a log)."""
    print(text, flush=True)


def announce(url: str, ready_file: Path | None, echo: Callable[[str], None]) -> None:
    """The ready signal: the ready line, and the URL written atomically to ``ready_file``."""
    echo(READY_LINE.format(url=url))
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ready_file, url + "\n")


def serve(settings: Settings, echo: Callable[[str], None] = say,
          ready_file: Path | None = None, reuse: bool = False) -> int:
    """Run the model server until Ctrl-C or SIGTERM; return the exit status for the CLI.

    Once it is healthy, the ready line is printed and ``ready_file`` (if given) gets its URL;
    the file is removed again when the server stops. With ``reuse``, a server that already
    answers at llm.base_url is reported ready instead (its URLs in the file) and nothing is
    started."""
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    if reuse and first_answering(settings):
        echo(f"Using the model server at {settings.llm.base_url} (already running).")
        announce(",".join(settings.llm.urls), ready_file, echo)
        return 0

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with start_server(settings) as server:
            echo(f"Serving {server.model} at {server.url} (log: {server.log_path}). "
                 "Press Ctrl-C to stop.")
            announce(server.url, ready_file, echo)
            code = server.process.wait()
            if code != 0:
                echo(f"The model server exited with code {code}: {log_tail(server.log_path, 3)}")
            return 0 if code == 0 else 1
    except KeyboardInterrupt:
        echo("Model server stopped.")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
