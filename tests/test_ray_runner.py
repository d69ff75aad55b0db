"""`paperchat ingest --runner ray`: the ingest stages as a Ray Data pipeline on a real local
Ray instance (2 CPUs, a small object store), against the local runner on the same PDFs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError
from core.settings import Settings
from index.library import Catalog
from index.open import open_library
from ingest import ray_runner
from ingest.commands import ingest_runner
from ingest.pipeline import Ingestor, ingest_items
from tests.helpers import CORPUS_PDFS, REPO, free_port, make_settings

PDFS = ["1910.13461.pdf", "1907.11692.pdf"]  # 10 and 13 pages
RAY_ENV = {"PAPERCHAT_RAY_LOCAL_CPUS": "2", "PAPERCHAT_RAY_OBJECT_STORE_MB": "128",
           "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query",
           "PAPERCHAT_INGEST_ARXIV_PDF_URL": "http://127.0.0.1:9/pdf"}


def cli(data: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`paperchat ingest` in a subprocess; PYTHONPATH makes Ray's workers import this tree."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO), **RAY_ENV}
    return subprocess.run([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data),
                           "ingest", "--json", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=1800)


def pdf_folder(base: Path) -> Path:
    folder = base / "pdfs"
    folder.mkdir()
    for name in PDFS:
        shutil.copy(CORPUS_PDFS / name, folder / name)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF\n")
    return folder


def library_view(settings: Settings) -> dict[str, Any]:
    """Papers, chunks (ids and texts) and vectors by chunk id."""
    lib = open_library(settings)
    papers = sorted((p.id, p.title, p.pages, p.chunks, p.content_hash) for p in lib.papers())
    chunks = {p[0]: [(c.id, c.text) for c in lib.chunks_of(p[0])] for p in papers}
    vectors = {int(i): v for ids, vecs in lib.iter_vectors() for i, v in zip(ids, vecs,
                                                                           strict=True)}
    return {"papers": papers, "chunks": chunks, "vectors": vectors}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same folder ingested by the local runner (in process) and by the Ray runner
    (`paperchat ingest --runner ray`, twice: the second run finds everything stored)."""
    base = tmp_path_factory.mktemp("runners")
    folder = pdf_folder(base)
    local = make_settings(base / "local")
    report = ingest_items(local, open_library(local), [str(folder)],
                          runner=ingest_runner(local))
    first = cli(base / "ray", "--runner", "ray", str(folder), home=base)
    again = cli(base / "ray", "--runner", "ray", str(folder), home=base)
    return {"local": report.to_dict(), "local_settings": local, "ray": first, "again": again,
            "ray_settings": make_settings(base / "ray")}


@pytest.mark.slow
def test_ray_runner_stores_the_same_library_as_the_local_runner(runs: dict[str, Any]) -> None:
    assert runs["ray"].returncode == 1, runs["ray"].stderr  # broken.pdf failed
    local, ray = library_view(runs["local_settings"]), library_view(runs["ray_settings"])
    assert [p[0] for p in ray["papers"]] == ["1907.11692", "1910.13461"]
    assert ray["papers"] == local["papers"]
    assert ray["chunks"] == local["chunks"]  # same ids: committed in the order of the items
    assert ray["vectors"].keys() == local["vectors"].keys() and ray["vectors"]
    ids = sorted(local["vectors"])
    a = np.stack([local["vectors"][i] for i in ids])
    b = np.stack([ray["vectors"][i] for i in ids])
    assert float((a * b).sum(1).min()) >= 0.9999


@pytest.mark.slow
def test_ray_runner_reports_each_item_as_the_local_runner(runs: dict[str, Any]) -> None:
    ray = json.loads(runs["ray"].stdout)

    def outcome(report: dict[str, Any]) -> list[tuple[str, str, str]]:
        return sorted((Path(r["item"]).name, r["status"], r.get("reason") or "")
                      for r in report["results"])

    assert outcome(ray) == outcome(runs["local"])
    assert [s for n, s, _ in outcome(ray)] == ["ingested", "ingested", "failed"]
    assert "Traceback" not in runs["ray"].stderr
    # Ray stays quiet: no progress bars, worker logs or INFO lines on the terminal
    assert len(runs["ray"].stderr.strip().splitlines()) <= 2, runs["ray"].stderr


@pytest.mark.slow
def test_a_second_ray_run_skips_what_is_stored(runs: dict[str, Any]) -> None:
    again = json.loads(runs["again"].stdout)
    statuses = {Path(r["item"]).name: r["status"] for r in again["results"]}
    assert statuses == {"1910.13461.pdf": "unchanged", "1907.11692.pdf": "unchanged",
                        "broken.pdf": "failed"}
    assert len(Catalog(runs["ray_settings"]).papers()) == 2


@pytest.mark.slow
def test_an_unreachable_ray_address_is_a_one_line_error(tmp_path: Path) -> None:
    folder = pdf_folder(tmp_path)
    run = cli(tmp_path / "data", "--runner", "ray", "--ray-address",
              f"127.0.0.1:{free_port()}", str(folder), home=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "No Ray cluster answers at 127.0.0.1:" in lines[0], run.stderr
    assert "ray start --head" in lines[0]
    assert Catalog(make_settings(tmp_path / "data")).papers() == []


def test_the_runner_follows_the_setting(tmp_path: Path) -> None:
    assert ingest_runner(make_settings(tmp_path)) is Ingestor
    assert ingest_runner(make_settings(tmp_path, ingest={"runner": "ray"})) is \
        ray_runner.RayIngestor


def test_ray_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match="needs Ray") as err:
        ray_runner.import_ray()
    assert "paperchat[ray]" in (err.value.hint or "")


def test_probe_address_fails_fast_on_a_closed_port() -> None:
    with pytest.raises(ConfigError, match="No Ray cluster answers"):
        ray_runner.probe_address(f"127.0.0.1:{free_port()}", timeout_s=2)
    ray_runner.probe_address("auto")  # left to Ray
