"""Shared fixtures (helpers live in tests/helpers.py): settings pointing at a temporary
library, the arXiv stand-in, a library of the whole corpus, the model server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from support.arxiv_stub import ArxivStub
from tests.helpers import (
    CORPUS_PDFS,
    SHARED,
    SKIPPED_ON_CUDA,
    ingest_into,
    make_settings,
    on_cuda,
)


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


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A library of the whole shared corpus, built once per test run. Read-only: tests that
    change a library copy it first (``copy_library``)."""
    data = tmp_path_factory.mktemp("corpus") / "data"
    s = make_settings(data)
    code = ingest_into(s, [str(CORPUS_PDFS)])
    assert code == 0, "ingesting the shared corpus failed"
    return s


@pytest.fixture(scope="session")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (ending in /v1) of a real vLLM server for the whole test run.

    PAPERCHAT_TEST_LLM_URL when set (`make test` starts one `paperchat serve-llm --port 0`
    for the run); otherwise one is started here the same way (``serve.server.start_server``
    with port 0, converting the CPU model first) and stopped at the end of the run.
    """
    url = os.environ.get("PAPERCHAT_TEST_LLM_URL", "").rstrip("/")
    if url:
        yield url if url.endswith("/v1") else f"{url}/v1"
        return
    from serve.server import start_server

    settings = make_settings(tmp_path_factory.mktemp("llm") / "data", llm={"serve_port": 0})
    with start_server(settings) as server:
        yield server.url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the whole-corpus library are marked ``corpus`` (left out by
    `make test-fast`; CI runs everything). On a CUDA machine, tests marked ``cpu_model`` or
    ``extra_server`` are skipped, with the reason."""
    cuda: bool | None = None
    for item in items:
        if "corpus_settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.corpus)
        for marker, reason in SKIPPED_ON_CUDA.items():
            if item.get_closest_marker(marker):
                cuda = on_cuda() if cuda is None else cuda
                if cuda:
                    item.add_marker(pytest.mark.skip(reason=f"on CUDA: {reason}"))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser); a
    browser test module skips itself when /usr/bin/chromium is missing."""
    from playwright import sync_api

    from tests.ui_helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
