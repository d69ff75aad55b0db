"""serve.server and serve.plan: the real vLLM server started on a free port, used and
stopped; `paperchat serve-llm --port 0 --ready-file` gives its URL and ends cleanly on
SIGTERM; conversion done once; start-up failures explained with the log's last lines; the
vLLM command line for CPU and CUDA, checked against vLLM's own argument parser."""

from __future__ import annotations

import json
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
from serve.plan import (
    CPU_MODEL_NAME,
    ServePlan,
    command,
    cpu_dtype,
    cpu_flags,
    cpu_model_dir,
    ensure_cpu_model,
    serve_dtype,
    server_python,
)
from serve.server import READY_LINE, port_open, start_server
from tests.helpers import REPO, free_port, make_settings
from tests.llm_stubs import MODELS, Canned

STARTUP_S = 600


@pytest.fixture(scope="module")
def llm_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A fresh data dir (the model is not converted yet); servers pick a free port."""
    return make_settings(tmp_path_factory.mktemp("serve") / "data", llm={"serve_port": 0})


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.cpu_model
def test_start_chat_stop_then_no_conversion(llm_settings: Settings) -> None:
    model_dir = cpu_model_dir(llm_settings)
    fresh = not (model_dir / "config.json").exists()
    server = start_server(llm_settings)  # port 0: a free one
    port = int(server.url.rsplit(":", 1)[1].removesuffix("/v1"))
    try:
        assert (model_dir / "config.json").is_file()  # converted when it was missing
        assert server.model == CPU_MODEL_NAME and server.url == f"http://127.0.0.1:{port}/v1"
        settings = llm_settings.llm.model_copy(update={"base_url": server.url})
        with LLMClient(settings) as client:
            assert client.health()
            assert client.served_model() == CPU_MODEL_NAME
            assert client.max_model_len() == 2048  # the CPU context
            question = "What is the capital of France? Answer in one sentence."
            answer = client.chat([{"role": "user", "content": question}],
                                 max_tokens=16, temperature=0.0)
            assert "Paris" in answer  # the converted weights are the model's, not noise
        assert server.log_path == llm_settings.data_dir / "logs" / f"vllm-{port}.log"
        log = server.log_path.read_text(errors="replace")
        assert f"dtype=torch.{cpu_dtype(cpu_flags())}" in log  # the CPU's dtype was used
        assert "enable_prefix_caching=True" in log
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
def serve_llm(llm_settings: Settings,
              tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`paperchat serve-llm --port 0 --ready-file F` as a script runs it (own process group)."""
    ready = tmp_path / "ready" / "url"
    cmd = [sys.executable, "-m", "paperchat.cli", "--data-dir", str(llm_settings.data_dir),
           "serve-llm", "--port", "0", "--ready-file", str(ready)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERCHAT_")}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    yield proc, ready
    if proc.poll() is None:  # the test failed early: let serve-llm stop vLLM's group too
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.extra_server
def test_serve_llm_ready_file_and_sigterm(serve_llm: tuple[subprocess.Popen[str], Path]) -> None:
    proc, ready = serve_llm
    deadline = time.monotonic() + STARTUP_S
    while not ready.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "serve-llm never wrote its ready file"
        time.sleep(1)
    url = ready.read_text().strip()
    port = int(url.rsplit(":", 1)[1].removesuffix("/v1"))
    assert url == f"http://127.0.0.1:{port}/v1" and port != 8000
    with LLMClient(make_settings(Path("/nonexistent"), llm={"base_url": url}).llm) as client:
        assert client.health()  # ready means healthy, not just listening
    pids = vllm_pids(port)
    assert len(pids) == 1
    pgid = os.getpgid(pids[0])
    assert pgid != os.getpgid(proc.pid)  # its own group, so Ctrl-C is handled by serve-llm
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert READY_LINE.format(url=url) in out.splitlines()  # the ready line, on a line of its own
    assert "Model server stopped." in out
    assert not ready.exists()  # the URL is gone with the server
    assert not port_open("127.0.0.1", port)
    assert not group_alive(pgid) and vllm_pids(port) == []


def test_reuse_reports_a_running_server_and_starts_nothing(tmp_path: Path) -> None:
    # A plain HTTP server that answers /health and /v1/models stands for a running one.
    ready = tmp_path / "ready"
    with Canned({"/health": (200, {}), "/v1/models": MODELS}) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERCHAT_")}
        env["PAPERCHAT_LLM_BASE_URL"] = f"http://127.0.0.1:{free_port()}/v1,{srv.url}"
        env["PAPERCHAT_LLM_SERVE_PYTHON"] = "/nonexistent/python"  # starting would fail
        done = subprocess.run(
            [sys.executable, "-m", "paperchat.cli", "--data-dir", str(tmp_path / "data"),
             "serve-llm", "--reuse", "--ready-file", str(ready)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    urls = env["PAPERCHAT_LLM_BASE_URL"]
    assert ready.read_text() == urls + "\n"  # every replica: the client fails over
    assert READY_LINE.format(url=urls) in done.stdout.splitlines()
    assert "already running" in done.stdout
    assert not (tmp_path / "data" / "logs").exists()  # nothing was started


def test_scripts_wait_on_serve_llm_and_keep_no_lifecycle_of_their_own() -> None:
    scripts = {p.name: p.read_text() for p in (REPO / "scripts").glob("*.sh")}
    lib = scripts["lib.sh"]
    assert "serve-llm --ready-file" in lib and 'kill -TERM -- "-$llm_pid"' in lib
    for name in ("run_tests.sh", "run_benchmarks.sh", "chat.sh"):
        text = scripts[name]
        assert ". scripts/lib.sh" in text and "start_llm " in text, name
        for copy in ("socket", "curl", "/models", "healthy()", "kill -TERM --"):
            assert copy not in text, f"{name} has its own {copy!r}"
    assert "--port 0" in scripts["run_tests.sh"] and "--reuse" in scripts["chat.sh"]
    conftest = (REPO / "tests" / "conftest.py").read_text()
    assert 'llm={"serve_port": 0}' in conftest and "free_port" not in conftest


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    # The test interpreter has no vLLM: the server dies at once, and the error says why.
    folder = tmp_path / "some-model"
    folder.mkdir()
    settings = make_settings(tmp_path / "data", llm={
        "serve_python": sys.executable, "serve_model": str(folder), "serve_port": 0})
    with pytest.raises(LLMError) as err:
        start_server(settings)
    message = str(err.value)
    assert "exited with code 1" in message and "No module named" in message
    assert "setup_llm.sh" in message and "\n" not in message
    assert len(list((settings.data_dir / "logs").glob("vllm-*.log"))) == 1  # no port retries


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        settings = make_settings(tmp_path / "data", llm={"serve_port": port})
        with pytest.raises(LLMError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start_server(settings)
    assert not (settings.data_dir / "logs").exists()


def test_missing_model_folder_is_a_config_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", llm={
        "serve_model": str(tmp_path / "nope"), "serve_port": 0})
    with pytest.raises(ConfigError, match="does not exist"):
        start_server(settings)


# -- what is started: dtype and command line --------------------------------------------------

def test_cpu_flags_and_dtype(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "avx512f"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert cpu_dtype(cpu_flags(info)) == "float32"  # AVX-512 alone emulates bf16
    assert cpu_dtype(frozenset({"avx512f", "avx512_bf16"})) == "bfloat16"
    assert cpu_dtype(frozenset({"amx_tile", "amx_bf16"})) == "bfloat16"
    s = make_settings(tmp_path / "data")
    amx = frozenset({"amx_bf16"})
    assert serve_dtype(s, cuda=False, flags=amx) == "bfloat16"
    assert serve_dtype(s, cuda=False, flags=frozenset({"avx2"})) == "float32"
    assert serve_dtype(s, cuda=True, flags=frozenset()) is None  # the model's own on CUDA
    fixed = make_settings(tmp_path / "data", llm={"serve_dtype": "bfloat16"})
    assert serve_dtype(fixed, cuda=False, flags=frozenset()) == "bfloat16"


def option(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_cpu_command(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data")
    cmd = command(ServePlan("/py", "/models/m", "m", cuda=False, dtype="float32"), s, 4321)
    assert cmd[:5] == ["/py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/m"]
    assert option(cmd, "--max-model-len") == "2048" and "--enforce-eager" in cmd
    assert option(cmd, "--dtype") == "float32" and option(cmd, "--port") == "4321"
    assert "--enable-prefix-caching" in cmd and "--gpu-memory-utilization" not in cmd
    assert option(cmd, "--tensor-parallel-size") == option(cmd, "--data-parallel-size") == "1"


def test_cuda_command_takes_the_models_context_and_the_memory_share(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", llm={
        "serve_gpu_memory_utilization": 0.55, "serve_tensor_parallel": 2,
        "serve_data_parallel": 3, "api_key": "k"})
    cmd = command(ServePlan("/py", "Qwen/Qwen2.5-7B-Instruct", "q", cuda=True), s, 8000)
    assert "--max-model-len" not in cmd and "--enforce-eager" not in cmd
    assert "--dtype" not in cmd  # vLLM's auto: the model's own
    assert option(cmd, "--gpu-memory-utilization") == "0.55"
    assert option(cmd, "--tensor-parallel-size") == "2"
    assert option(cmd, "--data-parallel-size") == "3" and option(cmd, "--api-key") == "k"
    longer = make_settings(tmp_path / "data", llm={"serve_max_model_len": 8192})
    cmd = command(ServePlan("/py", "q", "q", cuda=True), longer, 8000)
    assert option(cmd, "--max-model-len") == "8192"  # only when asked for


def test_serve_llm_options_become_settings(tmp_path: Path) -> None:
    from paperchat.cli import build_parser, cli_overrides

    args = build_parser().parse_args(
        ["serve-llm", "--port", "0", "--tensor-parallel", "2", "--data-parallel", "4",
         "--dtype", "float32", "--gpu-memory-utilization", "0.5", "--max-model-len", "4096"])
    assert cli_overrides(args)["llm"] == {
        "serve_port": 0, "serve_tensor_parallel": 2, "serve_data_parallel": 4,
        "serve_dtype": "float32", "serve_gpu_memory_utilization": 0.5,
        "serve_max_model_len": 4096}
    assert "ui" not in cli_overrides(args)  # serve-llm's --port is not the chat's


PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
args = make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[1:])
print(json.dumps({k: getattr(args, k) for k in sys.stdin.read().split()}))
"""


@pytest.mark.slow
def test_vllm_parses_both_command_lines(tmp_path: Path) -> None:
    """The flags exist in the installed vLLM, with the values meant (no GPU needed)."""
    python = server_python(make_settings(tmp_path / "data"))
    keys = ("model enable_prefix_caching tensor_parallel_size data_parallel_size "
            "gpu_memory_utilization max_model_len dtype enforce_eager port")
    s = make_settings(tmp_path / "data", llm={"serve_gpu_memory_utilization": 0.55,
                                               "serve_tensor_parallel": 2})
    for cuda, dtype in ((True, None), (False, "float32")):
        cmd = command(ServePlan(python, "/models/m", "m", cuda=cuda, dtype=dtype), s, 4321)
        done = subprocess.run([python, "-c", PARSE, *cmd[3:]], input=keys, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        parsed = json.loads(done.stdout.strip().splitlines()[-1])
        assert parsed["model"] == "/models/m" and parsed["port"] == 4321
        assert parsed["enable_prefix_caching"] is True and parsed["tensor_parallel_size"] == 2
        assert parsed["data_parallel_size"] == 1
        if cuda:
            assert parsed["gpu_memory_utilization"] == 0.55 and parsed["max_model_len"] is None
            assert parsed["dtype"] == "auto" and not parsed["enforce_eager"]
        else:
            assert parsed["max_model_len"] == 2048 and parsed["dtype"] == "float32"
            assert parsed["enforce_eager"] is True
