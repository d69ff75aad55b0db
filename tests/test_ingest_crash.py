"""Crash safety: SIGKILL in the middle of an ingest, and a full disk, leave the previous
library usable; the next run finishes the job."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import DiskFullError
from index.library import Catalog
from index.open import open_library
from ingest.commands import run_ingest
from rag.retrieve import Retriever
from tests.helpers import CORPUS_PDFS, make_settings
from tests.test_ingest import small_dir

pytestmark = pytest.mark.slow


def paper_count(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT COUNT(*) FROM papers").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def wait_for_papers(db: Path, n: int, proc: subprocess.Popen[Any]) -> None:
    """Poll the library's SQLite file until it holds ``n`` papers (or the process ends)."""
    deadline = time.monotonic() + 600
    while paper_count(db) < n and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sigkill_mid_ingest_then_rerun(tmp_path: Path) -> None:
    pdfs = small_dir(tmp_path, ["gpt1.pdf", "1910.13461.pdf", "1907.11692.pdf",
                                "1409.0473.pdf", "1810.04805.pdf"])
    data = tmp_path / "data"
    s = make_settings(data)
    assert run_ingest(s, [str(CORPUS_PDFS / "2302.13971.pdf")], quiet=True) == 0
    env = {**os.environ, "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    proc = subprocess.Popen([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                             "ingest", "--quiet", str(pdfs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_papers(data / "library.sqlite", 2, proc)  # the first new paper is committed
    assert proc.poll() is None, "the ingest ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # while the next four papers are being embedded
    proc.wait()
    lib = open_library(s)
    n = len(lib.papers())
    assert 2 <= n < 6, "killed mid-way: some papers committed, not all"
    assert lib.paper("2302.13971") is not None, "the earlier library is intact"
    assert all(p.chunks > 0 for p in lib.papers()), "no half-written paper"
    assert Retriever(s, lib).search("LLaMA training tokens", k=3).hits
    assert run_ingest(s, [str(pdfs)], quiet=True) == 0
    assert len(Catalog(s).papers()) == 6


def default_sigint() -> None:
    """A terminal's foreground command gets Ctrl-C; a test run started as a background job
    (CI, `nohup ... &`) ignores SIGINT, and a child would inherit that and never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_mid_ingest_exits_130_with_one_line(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it (the extraction
    workers get it too): exit code 130, one line on stderr, the library intact."""
    pdfs = small_dir(tmp_path, ["gpt1.pdf", "1910.13461.pdf", "1907.11692.pdf",
                                "1409.0473.pdf", "1810.04805.pdf"])
    data = tmp_path / "data"
    env = {**os.environ, "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    proc = subprocess.Popen([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                             "ingest", str(pdfs)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_sigint)
    wait_for_papers(data / "library.sqlite", 1, proc)
    assert proc.poll() is None, "the ingest ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "interrupted: the library is intact; run the command again to finish."]
    listed = subprocess.run([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                             "list", "--json"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    before = {p["id"]: p for p in json.loads(listed.stdout)}
    assert 1 <= len(before) < 5, "interrupted mid-way: some papers committed, not all"
    assert all(p["chunks"] > 0 for p in before.values()), "no half-written paper"
    s = make_settings(data)
    assert Retriever(s, open_library(s)).search("generative pre-training", k=3).hits
    rerun = subprocess.run([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                            "ingest", "--json", str(pdfs)], env=env, capture_output=True,
                           text=True)
    assert rerun.returncode == 0, rerun.stderr
    status = {r["paper_id"]: r["status"] for r in json.loads(rerun.stdout)["results"]}
    assert {p for p, st in status.items() if st == "unchanged"} == set(before)
    assert len(Catalog(s).papers()) == 5


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    # room for GPT-1's library (1.9 MB with its PDF copy and sentence rows), not for PaLM's
    # (a 3 MB PDF)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2600k", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_the_library(tiny_disk: Path) -> None:
    s = make_settings(tiny_disk / "data")
    assert run_ingest(s, [str(CORPUS_PDFS / "gpt1.pdf")], quiet=True) == 0
    with pytest.raises(DiskFullError) as err:
        run_ingest(s, [str(CORPUS_PDFS / "2204.02311.pdf")], quiet=True)  # PaLM: 83 pages
    assert "No space left" in str(err.value) and "\n" not in str(err.value)
    lib = open_library(s)
    assert [p.id for p in lib.papers()] == ["gpt1"]
    assert Retriever(s, lib).search("generative pre-training", k=3).hits
