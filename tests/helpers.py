"""Test helpers (imported by tests; conftest.py holds only fixtures): paths to the real
corpus, settings for a temporary library, the real ingest, free ports."""

from __future__ import annotations

import functools
import os
import shutil
import socket
from pathlib import Path

from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PAPERCHAT_SHARED_DIR", REPO.parent / "shared")).resolve()
CORPUS_PDFS = SHARED / "corpus" / "pdfs"
ARXIV_REPLIES = SHARED / "corpus" / "arxiv-api"
DEV_QUESTIONS = SHARED / "eval" / "dev_questions.jsonl"


def make_settings(data_dir: Path, **sections: dict[str, object]) -> Settings:
    """Settings for a test library in ``data_dir`` (environment ignored, network fast-fail)."""
    cli: dict[str, dict[str, object]] = {
        "paths": {"data_dir": str(data_dir)},
        "ingest": {"request_interval_s": 0.0, "retries": 1, "backoff_s": 0.01, "timeout_s": 5.0,
                   "arxiv_api_url": "http://127.0.0.1:9/api/query",
                   "arxiv_pdf_url": "http://127.0.0.1:9/pdf"},
    }
    for name, values in sections.items():
        cli.setdefault(name, {}).update(values)
    return load_settings(cli=cli, environ={})


def ingest_into(settings: Settings, items: list[str]) -> int:
    """Run the real ingest pipeline (as `paperchat ingest`) into ``settings.data_dir``."""
    from ingest.commands import run_ingest

    return run_ingest(settings, items, quiet=True)


def copy_library(src: Settings, dest: Path, **sections: dict[str, object]) -> Settings:
    """A writable copy of a built library."""
    shutil.copytree(src.data_dir, dest, ignore=shutil.ignore_patterns(".write.lock"))
    return make_settings(dest, **sections)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def on_cuda() -> bool:
    """True on a CUDA machine (where `paperchat serve-llm` serves a GPU model)."""
    from serve.plan import has_cuda

    return has_cuda()


# Tests left out on a CUDA machine (conftest skips them, giving the reason): the markers.
SKIPPED_ON_CUDA = {
    "cpu_model": "checks the packaged CPU model (SmolLM2 converted from GGUF, its tokenizer, "
                 "the 2,048-token context); on CUDA serve-llm serves a GPU model",
    "extra_server": "starts vLLM servers beside the suite's: on one GPU they do not fit next "
                    "to it (each takes llm.serve_gpu_memory_utilization of its memory)",
}
