"""What every benchmark shares: the machine description, timing helpers, settings for a
throw-away library, the results file and the Markdown table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import PaperchatError
from core.fsio import atomic_write_text
from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_SHARED = REPO.parent / "shared"
SIZES = ("tiny", "small", "full")
NO_GPU = "no GPU available"
PACKAGES = ("torch", "sentence-transformers", "transformers", "faiss-cpu", "faiss-gpu-cu12",
            "numpy", "pypdf", "pypdfium2", "bm25s", "langchain-text-splitters", "httpx",
            "vllm")


# ------------------------------------------------------------------ the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """Resident memory of this process now, in MiB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def gpus() -> list[str]:
    """GPU names from ``nvidia-smi -L`` (empty on a machine without an NVIDIA GPU)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU")]


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def thread_counts() -> dict[str, int]:
    import faiss
    import torch

    return {"torch": int(torch.get_num_threads()), "faiss_omp": int(faiss.omp_get_max_threads())}


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, GPU (or "no GPU available"), library versions, load."""
    import faiss

    found = gpus()
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": found or NO_GPU,
        "faiss_gpus": int(getattr(faiss, "get_num_gpus", lambda: 0)()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "threads": thread_counts(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------ timing


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of latencies in milliseconds (rounded to 0.001 ms)."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0}
    return {"p50": round(float(np.percentile(arr, 50)), 3),
            "p95": round(float(np.percentile(arr, 95)), 3),
            "mean": round(float(arr.mean()), 3), "n": int(arr.size)}


def rate(count: float, seconds: float) -> float:
    """Items per second, rounded (0 when nothing was timed)."""
    return round(count / seconds, 2) if seconds > 0 else 0.0


# ------------------------------------------------------------------ settings and output


def bench_settings(data_dir: Path, **sections: dict[str, object]) -> Settings:
    """Default settings (environment ignored: the benchmarks measure the defaults) for a
    library in ``data_dir``, with the given sections overridden."""
    cli: dict[str, dict[str, object]] = {"paths": {"data_dir": str(data_dir)},
                                         "ingest": {"request_interval_s": 0.0}}
    for name, values in sections.items():
        cli.setdefault(name, {}).update(values)
    return load_settings(cli=cli, environ={})


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, size: str, settings: dict[str, Any],
                  figures: dict[str, Any], tables: Sequence[str],
                  machine_info: dict[str, Any]) -> Path:
    """Write ``out_dir/NAME.json`` atomically and print the tables; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    machine_info = dict(machine_info)
    machine_info["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc = {"benchmark": name, "size": size,
           "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info, "settings": settings, "figures": figures,
           "tables": list(tables)}
    path = out_dir / f"{name}.json"
    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print("\n\n".join(tables))
    load = machine_info["load_avg_1_5_15"][0]
    print(f"\n({name}, size {size}: {path}; load average {load} at the start, "
          f"{machine_info['load_avg_end'][0]} at the end; GPU: {machine_info['gpu']})")
    return path


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", choices=SIZES, default="small",
                   help="tiny (tests), small (CI, a few minutes) or full (make bench)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for NAME.json")
    p.add_argument("--shared", type=Path,
                   default=Path(os.environ.get("PAPERCHAT_SHARED_DIR", DEFAULT_SHARED)),
                   help="the shared folder holding corpus/ and eval/")
    return p


def add_llm_url(p: argparse.ArgumentParser, when_none: str) -> None:
    """The ``--llm-url`` option of the benchmarks that talk to a model server."""
    p.add_argument("--llm-url", default=os.environ.get("PAPERCHAT_TEST_LLM_URL", ""),
                   help=f"model server base URL (default: $PAPERCHAT_TEST_LLM_URL; none: "
                        f"{when_none})")


def base_url(text: str) -> str:
    """An OpenAI-compatible base URL ending in /v1 ('' stays '')."""
    url = text.rstrip("/")
    return url if not url or url.endswith("/v1") else f"{url}/v1"


def run_main(main: Callable[[], int]) -> int:
    """Run a benchmark's ``main``; a paperchat error ends it with its one-line message."""
    try:
        return main()
    except PaperchatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
