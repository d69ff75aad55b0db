"""Hostile PDFs fail alone, in one line: a PDF that stalls its reader (a Form XObject bomb),
one that claims a huge page count, one over the size cap, and an extraction worker killed
mid-way; the other items of the run are ingested and the library stays intact. A CLI ingest
that waits on another writer's lock says so, once, on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import PdfError
from index.library import Catalog
from ingest.commands import run_ingest
from ingest.extract import extract_document
from ingest.workers import ExtractionPool
from support.pdfmaker import form_bomb_pdf, many_pages_pdf
from tests.helpers import CORPUS_PDFS, make_settings

TEXT = ["The Zorblax network has 42 layers and was trained for nine days on gerbils."] * 8
GOOD = CORPUS_PDFS / "gpt1.pdf"


def ingest_json(settings_dir: Path, items: list[str], capsys: pytest.CaptureFixture[str],
                **ingest: object) -> tuple[int, dict[str, dict[str, str]]]:
    s = make_settings(settings_dir, ingest=dict(ingest))
    code = run_ingest(s, items, as_json=True)
    report = json.loads(capsys.readouterr().out)
    return code, {Path(r["item"]).name: r for r in report["results"]}


@pytest.mark.slow
def test_a_pdf_that_stalls_its_reader_is_stopped_at_the_time_limit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = form_bomb_pdf(tmp_path / "bomb.pdf", TEXT, depth=20)  # ~1 min and 3 GB unchecked
    code, results = ingest_json(tmp_path / "data", [str(bomb), str(GOOD)], capsys,
                                extract_timeout_s=3.0)
    assert code == 1
    assert results["bomb.pdf"]["status"] == "failed"
    reason = results["bomb.pdf"]["reason"]
    assert "longer than 3 s" in reason and "ingest.extract_timeout_s" in reason
    assert "\n" not in reason
    assert results["gpt1.pdf"]["status"] == "ingested", "the other item goes on"
    assert [p.id for p in Catalog(make_settings(tmp_path / "data")).papers()] == ["gpt1"]


def test_a_huge_page_count_is_refused(tmp_path: Path) -> None:
    pdf = many_pages_pdf(tmp_path / "pages.pdf", TEXT, pages=100_000)  # 0.6 MB
    with pytest.raises(PdfError, match=r"100000 pages, more than ingest.max_pages \(2000\)"):
        extract_document(pdf, "pages", max_pages=2000)


@pytest.mark.slow
def test_page_and_size_caps_in_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pages = many_pages_pdf(tmp_path / "pages.pdf", TEXT, pages=5000)
    big = tmp_path / "big.pdf"
    big.write_bytes(GOOD.read_bytes())
    code, results = ingest_json(tmp_path / "data", [str(pages), str(big)], capsys,
                                max_pages=1000, max_pdf_mb=0.2)
    assert code == 1
    assert "5000 pages, more than ingest.max_pages (1000)" in results["pages.pdf"]["reason"]
    assert "larger than ingest.max_pdf_mb (0.2 MiB)" in results["big.pdf"]["reason"]
    assert not Catalog(make_settings(tmp_path / "data")).papers()


def _crash(path: str) -> None:
    """Runs in an extraction worker: dies the way a segfaulting reader dies."""
    os.kill(os.getpid(), signal.SIGSEGV)


def _read(path: str) -> int:
    return len(Path(path).read_bytes())


@pytest.mark.slow
def test_a_crashed_worker_fails_its_item_and_the_pool_goes_on(tmp_path: Path) -> None:
    with ExtractionPool(workers=2, timeout_s=60) as pool:
        crashed = pool.submit("evil.pdf", _crash, str(GOOD))
        fine = [pool.submit(f"ok{i}.pdf", _read, str(GOOD)) for i in range(3)]
        with pytest.raises(PdfError, match=r"evil.pdf: the process reading it crashed"):
            crashed.result(timeout=120)
        assert [f.result(timeout=120) for f in fine] == [GOOD.stat().st_size] * 3


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    except OSError:
        return ""


@pytest.mark.slow
def test_killing_the_extraction_worker_fails_one_item(tmp_path: Path) -> None:
    """SIGKILL to the process reading a (slow) PDF, as the OOM killer would: that item gets
    one line, the next is ingested, no traceback, exit code 1."""
    bomb = form_bomb_pdf(tmp_path / "slow.pdf", TEXT, depth=20)
    env = {**os.environ, "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query",
           "PAPERCHAT_INGEST_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "paperchat.cli", "--data-dir",
                             str(tmp_path / "data"), "ingest", "--json", str(bomb), str(GOOD)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    worker = None
    while worker is None and proc.poll() is None and time.monotonic() < deadline:
        servers = [p for p in descendants(proc.pid) if "forkserver" in cmdline(p)]
        workers = [c for s in servers for c in children(s)]
        worker = workers[0] if workers else None
        time.sleep(0.1)
    assert worker is not None, "no extraction worker was seen"
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    results = {Path(r["item"]).name: r for r in json.loads(out)["results"]}
    assert results["slow.pdf"]["status"] == "failed"
    assert "crashed (exit code -9)" in results["slow.pdf"]["reason"]
    assert results["gpt1.pdf"]["status"] == "ingested"


@pytest.mark.slow
def test_a_waiting_ingest_says_so_once(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data")
    catalog = Catalog(s)
    env = {**os.environ, "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    with catalog.writer():
        proc = subprocess.Popen([sys.executable, "-m", "paperchat.cli", "--data-dir",
                                 str(s.data_dir), "ingest", str(GOOD)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the ingest says something
        assert "Another paperchat process is writing to" in first and "waiting" in first
        assert proc.poll() is None, "it waits while the lock is held"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "waiting" not in err, "said once"
    assert [p.id for p in catalog.papers()] == ["gpt1"]
