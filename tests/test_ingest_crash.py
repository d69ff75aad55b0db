"""Crash safety: SIGKILL in the middle of an ingest, and a full disk, leave the previous
library usable; the next run finishes the job."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.library import Library
from index.open import open_library
from ingest.commands import run_ingest
from paperchat.errors import DiskFullError
from rag.retrieve import Retriever
from tests.conftest import CORPUS_PDFS, make_settings
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
    deadline = time.monotonic() + 600
    while paper_count(data / "library.sqlite") < 2 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # while the next papers are being embedded
    proc.wait()
    lib = open_library(s)
    n = len(lib.papers())
    assert 2 <= n <= 6
    assert lib.paper("2302.13971") is not None, "the earlier library is intact"
    assert all(p.chunks > 0 for p in lib.papers()), "no half-written paper"
    assert Retriever(s, lib).search("LLaMA training tokens", k=3).hits
    assert run_ingest(s, [str(pdfs)], quiet=True) == 0
    assert len(Library(s, None, check=False).papers()) == 6


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mnt)],
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
