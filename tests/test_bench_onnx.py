"""The ONNX benchmark runs at the tiny size and writes its results file with the expected
keys (no timing asserts: the figures are only checked to be there and consistent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_onnx
from tests.helpers import SHARED


@pytest.mark.slow
def test_onnx_benchmark_writes_rates_as_ratios_and_quality(tmp_path: Path) -> None:
    bench_onnx.run("tiny", tmp_path, SHARED)
    doc = json.loads((tmp_path / "onnx.json").read_text())
    assert doc["benchmark"] == "onnx" and doc["size"] == "tiny"
    f = doc["figures"]
    assert f["passages"] > 20
    assert set(f["rounds"]) == set(f["quality"]) == set(bench_onnx.BACKENDS)
    assert f["rounds"]["torch"]["speed_vs_torch"] == [1.0]  # the baseline is itself
    for b in bench_onnx.BACKENDS:
        r = f["rounds"][b]
        assert r["rounds"][0]["passages_per_s"] > 0 and r["cpu_s_per_1000"] > 0
        assert f["query_latency_ms"][b]["n"] == 3
    assert f["quality"]["onnx"]["cos_min"] >= 0.99  # fp32: the torch vectors
    assert 0.9 < f["quality"]["onnx-int8"]["cos_mean"] < 1.0
    assert doc["tables"][0].startswith("### Embedding backends") and "|---|" in doc["tables"][0]
