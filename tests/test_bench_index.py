"""The index benchmark runs at the tiny size and writes its figures (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_index
from tests.helpers import SHARED


@pytest.mark.slow
def test_index_benchmark_writes_its_figures(tmp_path: Path) -> None:
    bench_index.run("tiny", tmp_path, SHARED)
    doc = json.loads((tmp_path / "index.json").read_text())
    (fig,) = doc["figures"]["sizes"]
    assert fig["n"] == 2_000 and fig["add_paper_ms"]["n"] == bench_index.ADDS
    assert fig["bm25_shards"] >= 2  # the adds became shards, not a rebuild
    assert fig["reader_built"] == 0  # the reader loaded what the writer saved
    assert doc["tables"][0].startswith("### ") and "|---|" in doc["tables"][0]
