"""`paperchat ingest --runner ray --ray-address` on a real, separately started local Ray
cluster (`ray start --head --num-cpus 2`): not the instance the driver starts itself.
It stores what the local runner stores, `search` answers alike on both libraries, and a
driver killed mid-ingest leaves a usable library that the next run completes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.library import Catalog
from index.open import open_library
from ingest.commands import ingest_runner
from ingest.pipeline import ingest_items
from tests.helpers import CORPUS_PDFS, REPO, free_port, make_settings
from tests.test_ray_runner import RAY_ENV, cli, library_view, pdf_folder

RAY = Path(sys.executable).parent / "ray"
CRASH_PDFS = ["1907.11692.pdf", "1910.13461.pdf", "gpt1.pdf"]  # 13, 10 and 12 pages
QUERIES = ["denoising autoencoder for pretraining sequence-to-sequence models",
           "robustly optimized BERT pretraining with larger batches",
           "dynamic masking of training data"]
pytestmark = pytest.mark.slow


def _cluster_pids(temp_dir: str) -> list[int]:
    """Processes of this cluster only: each one's command line names its temp dir."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if temp_dir.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def _stop_cluster(temp_dir: str) -> None:
    """Stop this cluster's processes by pid (`ray stop` would stop every Ray cluster on
    this shared machine, other sessions' included)."""
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        for pid in _cluster_pids(temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while _cluster_pids(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not _cluster_pids(temp_dir):
            return


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A head node started with `ray start` (2 CPUs, ~150 MB object store); its address."""
    home = tmp_path_factory.mktemp("cluster-home")
    temp_dir = tempfile.mkdtemp(prefix="pc-ray-")  # short: Ray's socket paths have a limit
    port = free_port()
    env = {"PATH": f"{RAY.parent}:/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO),
           "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_memory_monitor_refresh_ms": "0"}  # it watches the whole shared machine
    try:
        start = subprocess.run(
            [str(RAY), "start", "--head", "--num-cpus", "2", "--num-gpus", "0",
             "--port", str(port), "--disable-usage-stats", "--include-dashboard=false",
             "--object-store-memory", str(150 * 2**20), "--temp-dir", temp_dir],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        assert start.returncode == 0, start.stdout + start.stderr
        assert _cluster_pids(temp_dir), "ray start left no process running"
        yield {"address": f"127.0.0.1:{port}", "home": home, "temp_dir": temp_dir}
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def drivers(cluster: dict[str, Any]) -> int:
    """Drivers (jobs) the cluster has served: each leaves its log in the cluster's session."""
    return len(list(Path(cluster["temp_dir"]).glob("session_latest/logs/python-core-driver-*")))


def paperchat(data: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Any `paperchat` command in a subprocess (the same environment as `cli`)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO), **RAY_ENV}
    return subprocess.run([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                           *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)


def search_texts(data: Path, query: str, home: Path) -> list[str]:
    run = paperchat(data, "search", query, "--json", "-k", "5", home=home)
    assert run.returncode == 0, run.stderr
    return [h["text"] for h in json.loads(run.stdout)["hits"]]


def test_the_cluster_stores_and_searches_as_the_local_runner(
        cluster: dict[str, Any], tmp_path: Path) -> None:
    folder, home = pdf_folder(tmp_path), cluster["home"]
    local = make_settings(tmp_path / "local")
    ingest_items(local, open_library(local), [str(folder)], runner=ingest_runner(local))
    jobs = drivers(cluster)
    run = cli(tmp_path / "ray", "--runner", "ray", "--ray-address", cluster["address"],
              str(folder), home=home)
    assert run.returncode == 1, run.stderr  # broken.pdf failed, the others were ingested
    statuses = sorted((Path(r["item"]).name, r["status"])
                      for r in json.loads(run.stdout)["results"])
    assert statuses == [("1907.11692.pdf", "ingested"), ("1910.13461.pdf", "ingested"),
                        ("broken.pdf", "failed")]
    assert "Traceback" not in run.stderr
    assert drivers(cluster) == jobs + 1  # it ran on the cluster, not on a Ray of its own
    a, b = library_view(local), library_view(make_settings(tmp_path / "ray"))
    assert [p[0] for p in b["papers"]] == ["1907.11692", "1910.13461"]
    assert b["papers"] == a["papers"] and b["chunks"] == a["chunks"]
    ids = sorted(a["vectors"])
    assert ids and sorted(b["vectors"]) == ids
    cos = (np.stack([a["vectors"][i] for i in ids]) * np.stack([b["vectors"][i] for i in ids]))
    assert float(cos.sum(1).min()) >= 1 - 1e-4
    for query in QUERIES:
        hits = search_texts(tmp_path / "local", query, home)
        assert len(hits) >= 2  # neighbouring chunks merge into one passage
        assert search_texts(tmp_path / "ray", query, home) == hits, query


def stored_papers(db: Path) -> set[str]:
    """Paper ids committed so far (read-only; nothing yet before the library exists)."""
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return {r[0] for r in con.execute("SELECT id FROM papers")}
    except sqlite3.OperationalError:  # the schema is not written yet
        return set()


def kill_after_first_paper(data: Path, folder: Path, address: str, home: Path) -> set[str]:
    """Start the Ray ingest, SIGKILL the driver once a paper is stored; the papers stored.
    (One paper a commit batch: a batch of finished papers is stored within milliseconds.)"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO), **RAY_ENV,
           "PAPERCHAT_RAY_COMMIT_BATCH": "1"}
    log = (home / "killed-driver.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                             "ingest", "--json", "--runner", "ray", "--ray-address", address,
                             str(folder)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=REPO)
    try:
        deadline = time.monotonic() + 1200
        while not stored_papers(data / "library.sqlite"):
            assert proc.poll() is None, (home / "killed-driver.log").read_text()
            assert time.monotonic() < deadline, "no paper stored in 20 minutes"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    return stored_papers(data / "library.sqlite")


def test_a_killed_driver_leaves_a_library_the_next_run_completes(
        cluster: dict[str, Any], tmp_path: Path) -> None:
    folder, data, home = tmp_path / "pdfs", tmp_path / "data", cluster["home"]
    folder.mkdir()
    for name in CRASH_PDFS:
        shutil.copy(CORPUS_PDFS / name, folder / name)
    jobs = drivers(cluster)
    stored = kill_after_first_paper(data, folder, cluster["address"], home)
    assert drivers(cluster) == jobs + 1
    assert 1 <= len(stored) < len(CRASH_PDFS), stored  # killed mid-ingest, not after it

    listed = paperchat(data, "list", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    assert {p["id"] for p in json.loads(listed.stdout)} == stored
    settings = make_settings(data)
    library = open_library(settings)
    for paper in library.papers():
        assert paper.chunks > 0 and len(library.chunks_of(paper.id)) == paper.chunks
    hits = paperchat(data, "search", QUERIES[1], "--json", "-k", "5", home=home)
    assert hits.returncode == 0, hits.stderr
    found = json.loads(hits.stdout)["hits"]
    assert found and {h["paper_id"] for h in found} <= stored

    again = cli(data, "--runner", "ray", "--ray-address", cluster["address"], str(folder),
                home=home)
    assert again.returncode == 0, again.stderr
    results = json.loads(again.stdout)["results"]
    assert sorted(Path(r["item"]).name for r in results) == CRASH_PDFS
    statuses = {r["paper_id"]: r["status"] for r in results}
    assert {p for p, s in statuses.items() if s == "unchanged"} == stored, statuses
    assert sorted(s for p, s in statuses.items() if p not in stored) == \
        ["ingested"] * (len(CRASH_PDFS) - len(stored))
    assert {p.id for p in Catalog(settings).papers()} == set(statuses)
