"""serve.server: the real vLLM server started, used and stopped; conversion done once;
`serve` ends cleanly on SIGTERM; start-up failures explained with the log's last lines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError, LLMError
from core.settings import Settings
from rag.llm import LLMClient
from serve.server import (
    CPU_MODEL_NAME,
    cpu_model_dir,
    ensure_cpu_model,
    port_open,
    server_python,
    start_server,
)
from tests.helpers import REPO, free_port, make_settings

STARTUP_S = 600


@pytest.fixture(scope="module")
def llm_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A fresh data dir (the model is not converted yet) and a free port."""
    return make_settings(tmp_path_factory.mktemp("serve") / "data",
                         llm={"serve_port": free_port()})


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.llm
def test_start_chat_stop_then_no_conversion(llm_settings: Settings) -> None:
    model_dir = cpu_model_dir(llm_settings)
    fresh = not (model_dir / "config.json").exists()
    port = llm_settings.llm.serve_port
    server = start_server(llm_settings, port=port)
    try:
        assert (model_dir / "config.json").is_file()  # converted when it was missing
        assert server.model == CPU_MODEL_NAME and server.url.endswith(f":{port}/v1")
        settings = llm_settings.llm.model_copy(update={"base_url": server.url})
        with LLMClient(settings) as client:
            assert client.health()
            assert client.served_model() == CPU_MODEL_NAME
            question = "What is the capital of France? Answer in one sentence."
            answer = client.chat([{"role": "user", "content": question}],
                                 max_tokens=16, temperature=0.0)
            assert "Paris" in answer  # the converted weights are the model's, not noise
        assert server.log_path == llm_settings.data_dir / "logs" / "vllm.log"
        assert server.log_path.stat().st_size > 0
    finally:
        server.stop()
    assert not server.alive()
    assert not port_open("127.0.0.1", port)
    assert not group_alive(server.pid)  # the engine and worker processes went too

    weights = model_dir / "model.safetensors"
    before = (weights.stat().st_mtime_ns, weights.stat().st_ino)
    log = llm_settings.data_dir / "logs" / "convert_gguf.log"
    log_before = log.stat().st_mtime_ns if log.exists() else None
    assert log_before is not None or not fresh  # the conversion above was logged
    assert ensure_cpu_model(llm_settings, server_python(llm_settings)) == model_dir
    assert (weights.stat().st_mtime_ns, weights.stat().st_ino) == before
    assert (log.stat().st_mtime_ns if log.exists() else None) == log_before


def vllm_pids(port: int) -> list[int]:
    """Processes whose command line holds ``--port <port>`` (the vLLM API server)."""
    needle = f"--port\0{port}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def serve_process(llm_settings: Settings) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    code = ("import sys; from pathlib import Path; from tests.helpers import make_settings; "
            "from serve.server import serve; "
            "sys.exit(serve(make_settings(Path(sys.argv[1]), llm={'serve_port': sys.argv[2]})))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(llm_settings.data_dir), str(port)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.llm
def test_serve_stops_cleanly_on_sigterm(serve_process: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = serve_process
    deadline = time.monotonic() + STARTUP_S
    while not port_open("127.0.0.1", port):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "serve did not open its port"
        time.sleep(1)
    pids = vllm_pids(port)
    assert len(pids) == 1
    pgid = os.getpgid(pids[0])
    assert pgid != os.getpgid(proc.pid)  # its own group, so Ctrl-C is handled by serve
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "Model server stopped." in out
    assert not port_open("127.0.0.1", port)
    assert not group_alive(pgid) and vllm_pids(port) == []


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    # The test interpreter has no vLLM: the server dies at once, and the error says why.
    folder = tmp_path / "some-model"
    folder.mkdir()
    settings = make_settings(tmp_path / "data", llm={
        "serve_python": sys.executable, "serve_model": str(folder), "serve_port": free_port()})
    with pytest.raises(LLMError) as err:
        start_server(settings)
    message = str(err.value)
    assert "exited with code 1" in message and "No module named" in message
    assert "setup_llm.sh" in message and "\n" not in message
    assert (settings.data_dir / "logs" / "vllm.log").is_file()


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        settings = make_settings(tmp_path / "data", llm={"serve_port": port})
        with pytest.raises(LLMError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start_server(settings)
    assert not (settings.data_dir / "logs" / "vllm.log").exists()


def test_missing_model_folder_is_a_config_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", llm={
        "serve_model": str(tmp_path / "nope"), "serve_port": free_port()})
    with pytest.raises(ConfigError, match="does not exist"):
        start_server(settings)
