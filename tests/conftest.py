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
