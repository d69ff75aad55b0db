"""Downloader against the real HTTP stand-in for arXiv (support/arxiv_stub.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import DiskFullError, NetworkError, PdfError, SourceNotFoundError
from core.settings import IngestSettings
from ingest.fetch import Downloader
from support.arxiv_stub import ArxivStub
from tests.helpers import CORPUS_PDFS, free_port, make_settings

LORA = "2106.09685"
LORA_BYTES = (CORPUS_PDFS / f"{LORA}.pdf").read_bytes()


def ingest_settings(tmp_path: Path, **values: object) -> IngestSettings:
    return make_settings(tmp_path / "data", ingest=values).ingest


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "pdfs"


def test_download_checks_and_renames(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    seen: list[tuple[int, int | None]] = []
    settings = ingest_settings(tmp_path, user_agent="paperchat-test/9")
    with Downloader(settings, cache) as downloader:
        path = downloader.fetch(arxiv_stub.pdf_url(LORA), f"{LORA}v1.pdf",
                                progress=lambda done, total: seen.append((done, total)))
    assert path == cache / f"{LORA}v1.pdf"
    assert path.read_bytes() == LORA_BYTES
    assert not (cache / f"{LORA}v1.pdf.part").exists()
    assert seen[-1] == (len(LORA_BYTES), len(LORA_BYTES))
    [request] = arxiv_stub.requests
    assert request.headers["user-agent"] == "paperchat-test/9"
    assert "range" not in request.headers


def test_cached_file_needs_no_request(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    with Downloader(ingest_settings(tmp_path), cache) as downloader:
        first = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
        second = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert first == second
    assert len(arxiv_stub.requests) == 1


def test_plain_pdf_url_and_redirects(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    arxiv_stub.redirect("/go/gpt1", "/files/gpt1.pdf")
    with Downloader(ingest_settings(tmp_path), cache) as downloader:
        path = downloader.fetch(f"{arxiv_stub.base_url}/go/gpt1", "gpt1.pdf")
    assert path.read_bytes() == (CORPUS_PDFS / "gpt1.pdf").read_bytes()
    assert [r.path for r in arxiv_stub.requests] == ["/go/gpt1", "/files/gpt1.pdf"]


def test_404_is_source_not_found(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    with Downloader(ingest_settings(tmp_path), cache) as downloader, \
            pytest.raises(SourceNotFoundError, match="not found"):
        downloader.fetch(arxiv_stub.pdf_url("2401.00001"), "missing.pdf")
    assert list(cache.iterdir()) == []


def test_html_instead_of_pdf(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail(f"/pdf/{LORA}v1", "html")
    with Downloader(ingest_settings(tmp_path), cache) as downloader, \
            pytest.raises(PdfError, match="returned a web page, not a PDF"):
        downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(("body", "message"), [
    (b"<!doctype html><p>Please sign in</p>", "returned a web page, not a PDF"),
    (b"GIF89a\x01\x00\x01\x00", "did not return a PDF"),
])
def test_body_must_start_with_pdf_magic(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub,
                                        body: bytes, message: str) -> None:
    arxiv_stub.respond("/files/fake.pdf", body, content_type="application/pdf")
    with Downloader(ingest_settings(tmp_path), cache) as downloader, \
            pytest.raises(PdfError, match=message):
        downloader.fetch(arxiv_stub.file_url("fake.pdf"), "fake.pdf")
    assert list(cache.iterdir()) == []


def test_too_large_pdf_is_refused(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    seen: list[int] = []
    with Downloader(ingest_settings(tmp_path, max_pdf_mb=0.5), cache) as downloader, \
            pytest.raises(PdfError, match=r"larger than 0\.5 MiB"):
        downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf",  # 1.6 MiB
                         progress=lambda done, total: seen.append(done))
    assert seen == []  # refused from Content-Length, before any byte was written
    assert list(cache.iterdir()) == []


def test_size_is_checked_while_streaming_without_length(tmp_path: Path, cache: Path,
                                                        arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail(f"/pdf/{LORA}v1", "no-length")
    seen: list[tuple[int, int | None]] = []
    with Downloader(ingest_settings(tmp_path, max_pdf_mb=0.5), cache) as downloader, \
            pytest.raises(PdfError, match=r"larger than 0\.5 MiB"):
        downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf",
                         progress=lambda done, total: seen.append((done, total)))
    assert seen and all(total is None for _, total in seen)
    assert list(cache.iterdir()) == []


def test_download_without_length(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail(f"/pdf/{LORA}v1", "no-length")
    with Downloader(ingest_settings(tmp_path), cache) as downloader:
        done = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert done.read_bytes() == LORA_BYTES


def test_truncated_download_keeps_part_and_resumes_with_range(
    tmp_path: Path, cache: Path, arxiv_stub: ArxivStub
) -> None:
    path = f"/pdf/{LORA}v1"
    arxiv_stub.fail(path, "truncate")
    part = cache / "lora.pdf.part"
    with Downloader(ingest_settings(tmp_path, retries=0), cache) as downloader:
        with pytest.raises(NetworkError, match="Could not download"):
            downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
        kept = part.stat().st_size
        assert 0 < kept < len(LORA_BYTES)
        arxiv_stub.clear()
        done = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert done.read_bytes() == LORA_BYTES
    assert not part.exists()
    assert arxiv_stub.requests_to(path)[-1].headers["range"] == f"bytes={kept}-"


def test_retries_resume_until_complete(tmp_path: Path, cache: Path,
                                       arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail(f"/pdf/{LORA}v1", "truncate", times=2)
    sleeps: list[float] = []
    settings = ingest_settings(tmp_path, retries=2, backoff_s=0.5)
    with Downloader(settings, cache, sleep=sleeps.append) as downloader:
        done = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert done.read_bytes() == LORA_BYTES
    ranges = [r.headers.get("range") for r in arxiv_stub.requests]
    assert ranges[0] is None and ranges[1] is not None and ranges[2] is not None
    assert sleeps == [0.5, 1.0]


def test_server_without_range_support_restarts(tmp_path: Path, cache: Path,
                                               arxiv_stub: ArxivStub) -> None:
    cache.mkdir()
    (cache / "lora.pdf.part").write_bytes(LORA_BYTES[:5000])
    arxiv_stub.fail(f"/pdf/{LORA}v1", "no-range")
    with Downloader(ingest_settings(tmp_path), cache) as downloader:
        done = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert done.read_bytes() == LORA_BYTES
    assert arxiv_stub.requests[0].headers["range"] == "bytes=5000-"


def test_complete_part_file_is_finished_without_download(tmp_path: Path, cache: Path,
                                                         arxiv_stub: ArxivStub) -> None:
    cache.mkdir()
    (cache / "lora.pdf.part").write_bytes(LORA_BYTES)  # crashed before the rename
    with Downloader(ingest_settings(tmp_path), cache) as downloader:
        done = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert done.read_bytes() == LORA_BYTES
    assert len(arxiv_stub.requests) == 1  # answered 416: nothing more to fetch


def test_stall_times_out_after_retries(tmp_path: Path, cache: Path,
                                       arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail(f"/pdf/{LORA}v1", "stall")
    settings = ingest_settings(tmp_path, timeout_s=0.3, retries=1)
    with Downloader(settings, cache) as downloader, \
            pytest.raises(NetworkError, match=r"Could not download .*timed out"):
        downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert len(arxiv_stub.requests) == 2


def test_server_errors_are_retried(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail(f"/pdf/{LORA}v1", "500", times=1)
    sleeps: list[float] = []
    with Downloader(ingest_settings(tmp_path, backoff_s=0.25), cache,
                    sleep=sleeps.append) as downloader:
        done = downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert done.read_bytes() == LORA_BYTES
    assert len(arxiv_stub.requests) == 2 and sleeps == [0.25]


def test_refused_connection_is_a_network_error(tmp_path: Path, cache: Path) -> None:
    port = free_port()
    with Downloader(ingest_settings(tmp_path), cache, sleep=lambda s: None) as downloader, \
            pytest.raises(NetworkError, match=f"Could not download http://127.0.0.1:{port}/"):
        downloader.fetch(f"http://127.0.0.1:{port}/x.pdf", "x.pdf")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_is_reported(tmp_path: Path, cache: Path, arxiv_stub: ArxivStub) -> None:
    cache.mkdir()
    (cache / "lora.pdf.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    with Downloader(ingest_settings(tmp_path), cache) as downloader, \
            pytest.raises(DiskFullError, match="No space left"):
        downloader.fetch(arxiv_stub.pdf_url(LORA), "lora.pdf")
    assert not (cache / "lora.pdf").exists()
