"""Shared fixtures: paths to the real corpus and settings pointing at a temporary library."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from paperchat.settings import Settings, load_settings
from tests.arxiv_stub import ArxivStub

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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def arxiv_stub() -> Iterator[ArxivStub]:
    """A real HTTP stand-in for arXiv (API + PDFs) on 127.0.0.1, serving the corpus.

    Point settings at it with ``make_settings(dir, ingest=arxiv_stub.ingest_settings())``.
    """
    with ArxivStub(SHARED / "corpus") as stub:
        yield stub


def ingest_into(settings: Settings, items: list[str]) -> int:
    """Run the real ingest pipeline (as `paperchat ingest`) into ``settings.data_dir``."""
    from ingest.commands import run_ingest

    return run_ingest(settings, items, quiet=True)


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A library of the whole shared corpus, built once per test run. Read-only: tests that
    change a library copy it first (``copy_library``)."""
    data = tmp_path_factory.mktemp("corpus") / "data"
    s = make_settings(data)
    code = ingest_into(s, [str(CORPUS_PDFS)])
    assert code == 0, "ingesting the shared corpus failed"
    return s


def copy_library(src: Settings, dest: Path, **sections: dict[str, object]) -> Settings:
    """A writable copy of a built library."""
    import shutil

    shutil.copytree(src.data_dir, dest, ignore=shutil.ignore_patterns(".write.lock"))
    return make_settings(dest, **sections)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (ending in /v1) of a real vLLM server for the whole test run.

    PAPERCHAT_TEST_LLM_URL when set (CI starts one server); otherwise one is started here
    with ``rag.server.start_server`` on a free port (converting the CPU model first) and
    stopped at the end of the run.
    """
    url = os.environ.get("PAPERCHAT_TEST_LLM_URL", "").rstrip("/")
    if url:
        yield url if url.endswith("/v1") else f"{url}/v1"
        return
    from rag.server import start_server

    settings = make_settings(tmp_path_factory.mktemp("llm") / "data",
                             llm={"serve_port": free_port()})
    with start_server(settings) as server:
        yield server.url
