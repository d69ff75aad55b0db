"""`paperchat reading-list`, `paperchat ingest` with no argument (the reading list, against
the arXiv stand-in), ingest with arXiv unreachable, and arXiv's error entry through ingest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from index.library import Catalog
from ingest.commands import run_ingest
from paperchat.cli import main
from support.arxiv_stub import ArxivStub
from tests.helpers import CORPUS_PDFS, SHARED, copy_library, free_port, make_settings
from tests.test_ingest import cli

PDF_URL_PAPERS = {"gpt1", "alphafold", "progen"}
CORPUS_IDS = {p.stem for p in CORPUS_PDFS.glob("*.pdf")}


def flat(text: str) -> str:
    """Text with rich's line wrapping undone."""
    return " ".join(text.split())


def test_reading_list_json_names_every_paper() -> None:
    run = cli("reading-list", "--json", data=Path("/nonexistent/never-created"))
    assert run.returncode == 0, run.stderr
    entries = json.loads(run.stdout)
    by_id = {e["id"]: e for e in entries}
    assert len(entries) == 35 and len(by_id) == 35, "entry 20 repeats entry 13: listed once"
    assert by_id["2303.15647"]["title"].startswith("Scaling Down to Scale Up")  # the PEFT guide
    assert by_id["2101.00027"]["title"].startswith("The Pile")
    assert [e["id"] for e in entries].count("1910.13461") == 1, "BART only as itself"
    assert sorted(e["n"] for e in entries if e["n"]) == list(range(1, 20))
    for pid in PDF_URL_PAPERS:
        assert by_id[pid]["arxiv_id"] is None
        assert by_id[pid]["pdf_url"].startswith("https://") and by_id[pid]["pdf_url"].endswith(
            ".pdf")
    assert all(e["arxiv_id"] == e["id"] for e in entries if e["id"] not in PDF_URL_PAPERS)
    assert all(e["title"] and isinstance(e["year"], int) for e in entries)


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`paperchat reading-list --json | head -1`: no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "paperchat.cli", "reading-list", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == b"["
    proc.stdout.close()  # as `head` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == "", err


def test_reading_list_table(tmp_path: Path) -> None:
    run = cli("reading-list", data=tmp_path / "data",
              env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    out = flat(run.stdout)
    assert "Built-in reading list (35 papers)" in out
    for pid in ("2303.15647", "2101.00027", "gpt1", "alphafold", "progen", "1706.03762"):
        assert f" {pid} " in out, pid
    assert "Attention Is All You Need" in out
    assert not (tmp_path / "data").exists(), "printing the list creates no library"


@pytest.fixture
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host but 127.0.0.1 goes through a proxy that refuses connections, so the
    reading list's PDF URLs (openai.com, nature.com) fail the same way on every machine."""
    closed = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def stub_environ(monkeypatch: pytest.MonkeyPatch, stub: ArxivStub) -> None:
    """`paperchat` settings through the environment: arXiv is the stub, and no waiting."""
    for key, value in {**stub.ingest_settings(), "request_interval_s": 0, "retries": 1,
                       "backoff_s": 0.01, "timeout_s": 5}.items():
        monkeypatch.setenv(f"PAPERCHAT_INGEST_{key.upper()}", str(value))


def test_ingest_without_arguments_ingests_the_reading_list(
        corpus_settings: Settings, arxiv_stub: ArxivStub, tmp_path: Path, no_internet: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    s = copy_library(corpus_settings, tmp_path / "data")
    fresh = {"1910.13461", "1907.11692"}  # BART and RoBERTa: 23 pages to embed again
    assert main(["--data-dir", str(s.data_dir), "remove", *sorted(fresh)]) == 0
    capsys.readouterr()
    stub_environ(monkeypatch, arxiv_stub)
    code = main(["--data-dir", str(s.data_dir), "ingest", "--json"])
    out, err = capsys.readouterr()
    assert code == 1, "papers the stand-in lacks failed"
    assert "Ingesting the built-in reading list (35 papers)." in flat(err)
    report = json.loads(out)
    results = {r["paper_id"]: r for r in report["results"]}
    assert len(report["results"]) == 35 and len(results) == 35
    status = {pid: r["status"] for pid, r in results.items()}
    assert {p for p, st in status.items() if st == "ingested"} == fresh
    assert {p for p, st in status.items() if st == "unchanged"} == CORPUS_IDS - fresh - {"gpt1"}
    failed = {p: r["reason"] for p, r in results.items() if r["status"] == "failed"}
    assert len(failed) == 35 - 14 and "\n" not in "".join(failed.values())
    for pid in PDF_URL_PAPERS:
        assert failed[pid].startswith("Could not download https://"), failed[pid]
    for pid in set(failed) - PDF_URL_PAPERS:
        assert failed[pid] == f"arXiv has no paper with id {pid}. Check the id."
    assert not report["arxiv_unreachable"]
    asked = [i for r in arxiv_stub.api_requests() for i in r.ids]
    assert len(asked) == 32 and len(arxiv_stub.api_requests()) == 2, "batched id lists"
    lib = Catalog(s)
    assert {p.id for p in lib.papers()} == CORPUS_IDS
    bart = lib.paper("1910.13461")
    assert bart is not None and bart.metadata_from == "arxiv" and bart.version == 1
    assert bart.chunks > 0 and bart.pages == 10


@pytest.mark.slow
def test_offline_ingest_takes_metadata_from_the_pdfs(tmp_path: Path) -> None:
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    shutil.copy(CORPUS_PDFS / "gpt1.pdf", pdfs / "openai-gpt.pdf")  # no arXiv id, unlisted
    shutil.copy(CORPUS_PDFS / "1910.13461.pdf", pdfs / "1910.13461.pdf")
    closed = f"http://127.0.0.1:{free_port()}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200",
           "PAPERCHAT_INGEST_ARXIV_API_URL": f"{closed}/api/query",
           "PAPERCHAT_INGEST_ARXIV_PDF_URL": f"{closed}/pdf"}
    run = cli("ingest", str(pdfs), data=tmp_path / "data", env=env)
    assert run.returncode == 0, run.stderr
    assert ("arXiv could not be reached: metadata came from the PDFs "
            "(and the built-in reading list).") in flat(run.stderr)
    assert "Library: 2 papers" in flat(run.stdout)
    papers = {p["id"]: p for p in json.loads(cli("list", "--json", data=tmp_path / "data",
                                                 env=env).stdout)}
    assert set(papers) == {"openai-gpt", "1910.13461"}
    gpt = papers["openai-gpt"]
    assert gpt["metadata_from"] == "pdf" and gpt["arxiv_id"] is None
    assert "Generative Pre-Training" in gpt["title"]
    bart = papers["1910.13461"]
    assert bart["metadata_from"] == "reading-list" and bart["year"] == 2019
    assert bart["title"].startswith("BART: Denoising Sequence-to-Sequence Pre-training")


class RejectingStub(ArxivStub):
    """The stand-in, answering arXiv's error feed (HTTP 400) to any id list that holds
    ``bad``, as arXiv does for a whole request with one id it rejects."""

    def __init__(self, corpus_dir: Path, bad: str) -> None:
        super().__init__(corpus_dir)
        self.bad = bad

    def answer_query(self, query: dict[str, str]) -> tuple[int, bytes]:
        if self.bad in query.get("id_list", "").split(","):
            return self.error_status, self.error_reply(self.bad)
        return super().answer_query(query)


@pytest.fixture
def rejecting_stub() -> Iterator[RejectingStub]:
    stub = RejectingStub(SHARED / "corpus", bad="2301.99999")
    with stub:
        yield stub


def test_api_error_entry_fails_only_its_id(rejecting_stub: RejectingStub, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    s = make_settings(tmp_path / "data", ingest=rejecting_stub.ingest_settings())
    code = run_ingest(s, ["2301.99999", "1910.13461"], as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    by_item = {r["item"]: r for r in report["results"]}
    bad = by_item["2301.99999"]
    assert bad["status"] == "failed"
    assert bad["reason"] == ("arXiv rejected the id '2301.99999': incorrect id format for "
                             "2301.99999. Check the arXiv id (like 1706.03762 or "
                             "hep-th/9901001).")
    good = by_item["1910.13461"]
    assert good["status"] == "ingested", good["reason"]
    assert not report["arxiv_unreachable"], "an error entry is an answer, not an outage"
    paper = Catalog(s).paper("1910.13461")
    assert paper is not None and paper.metadata_from == "arxiv"
