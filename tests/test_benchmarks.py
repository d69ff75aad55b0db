"""The benchmarks run at a tiny size and write their results files with the expected keys
(no timing asserts: the figures are only checked to be there and consistent)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import (
    bench_answer,
    bench_ingest,
    bench_pages,
    bench_query,
    bench_rewrite,
    large,
    synthetic,
)
from benchmarks.common import NO_GPU, REPO, markdown_table, percentiles
from core.settings import IndexSettings
from tests.helpers import SHARED

MACHINE_KEYS = {"cpu", "cores", "memory_gib", "gpu", "versions", "threads", "load_avg_1_5_15",
                "load_avg_end"}


def read_results(path: Path, name: str) -> dict:
    doc = json.loads(path.read_text())
    assert path.name == f"{name}.json"
    assert {"benchmark", "size", "created", "machine", "settings", "figures", "tables"} <= set(doc)
    assert doc["benchmark"] == name and doc["size"] == "tiny"
    assert set(doc["machine"]) >= MACHINE_KEYS
    assert doc["machine"]["gpu"] == NO_GPU or isinstance(doc["machine"]["gpu"], list)
    assert {"torch", "faiss-cpu", "sentence-transformers"} & set(doc["machine"]["versions"])
    assert all(t.startswith("### ") and "|---|" in t for t in doc["tables"])
    return doc


@pytest.fixture(scope="module")
def ingest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The ingest benchmark at the tiny size, keeping its library for the others."""
    base = tmp_path_factory.mktemp("bench")
    bench_ingest.run("tiny", base / "out", SHARED, keep_library=base / "library")
    return read_results(base / "out" / "ingest.json", "ingest"), base / "library"


@pytest.mark.slow
def test_ingest_benchmark_writes_every_stage(ingest_run: tuple[dict, Path]) -> None:
    doc, library = ingest_run
    f = doc["figures"]
    stages = {"download", "extract_pypdf", "extract_pypdfium2", "extract_pool", "chunk",
              "embed", "index", "whole_ingest", "embed_only_same_chunks", "model_load",
              "whole_ingest_before"}
    assert stages <= set(f)
    assert all(f[s]["seconds"] > 0 for s in stages)
    assert f["extract_pypdf"]["pages"] == f["extract_pypdfium2"]["pages"] == 10  # BART: 10 pages
    assert f["chunk"]["chunks"] == f["embed"]["chunks"] > 0 and f["chunk"]["chunks_per_s"] > 0
    # the ratio's two sides measure the same chunks
    assert f["whole_ingest"]["chunks"] == f["embed_only_same_chunks"]["chunks"] > 0
    floor = f["embed_only_same_chunks"]
    assert floor["seconds_before"] == f["embed"]["seconds"]  # the same texts, embedded twice
    assert floor["seconds"] == pytest.approx((floor["seconds_before"] + floor["seconds_after"]) / 2,
                                             abs=1e-3)
    expected = f["whole_ingest"]["seconds"] / floor["seconds"]
    assert f["ratio_whole_to_embed"] == pytest.approx(expected, rel=1e-2)
    each = f["ratio_whole_to_each_embed_run"]  # against each embedding run, not the mean only
    for run in ("before", "after"):
        assert each[run] == pytest.approx(f["whole_ingest"]["seconds"]
                                          / floor[f"seconds_{run}"], rel=1e-2)
    before = f["whole_ingest_before"]  # the starting configuration: pypdf, 1 process
    assert before["workers"] == 1 and before["chunks"] > 0
    per_chunk = (before["seconds"] / before["chunks"]) / (floor["seconds"] / floor["chunks"])
    assert f["ratio_before_to_embed"] == pytest.approx(per_chunk, rel=1e-2)
    assert doc["settings"]["papers"] == ["1910.13461"]
    assert (library / "library.sqlite").is_file()


@pytest.mark.slow
def test_query_benchmark_on_the_kept_library(ingest_run: tuple[dict, Path],
                                             tmp_path: Path) -> None:
    doc_ingest, library = ingest_run
    bench_query.run("tiny", tmp_path, SHARED, library=library, sizes=[1_000], ivfpq_sizes=[],
                    e2e_sizes=[1_000])
    doc = read_results(tmp_path / "query.json", "query")
    corpus = doc["figures"]["corpus"]
    assert corpus["chunks"] == doc_ingest["figures"]["whole_ingest"]["chunks"]
    for stage in bench_query.STAGES:
        assert {"p50", "p95"} <= set(corpus[stage]) and corpus[stage]["n"] == 5
    assert {"query_threads_1", "query_threads_2"} <= set(corpus)
    fitted, random = doc["figures"]["synthetic"]
    assert (fitted["data"], random["data"]) == ("fitted", "random")
    for size in (fitted, random):
        assert size["n"] == 1_000 and {"p50", "p95"} <= set(size["flat"]["latency_2t"])
        for kind, values in (("hnsw", synthetic.HNSW_EF), ("ivf", synthetic.IVF_NPROBE)):
            assert [r["param"] for r in size[kind]["sweep"]] == list(values)
            assert all(0.0 <= r["recall_at_10"] <= 1.0 for r in size[kind]["sweep"])
            assert size[kind]["memory_mib"] > 0
        # with efSearch 512 over 1,000 vectors HNSW visits nearly everything: recall ~1
        assert size["hnsw"]["sweep"][-1]["recall_at_10"] >= 0.95
        assert set(size["best"]) == {"hnsw", "ivf"}
    assert "build_s_1t" in fitted["hnsw"] and "build_s_1t" not in random["hnsw"]
    [scaled] = doc["figures"]["end_to_end"]  # a real library of 1,000 chunks, end to end
    assert scaled["chunks"] == scaled["n"] == 1_000 and scaled["index_kind"] == "flat"
    for stage in bench_query.STAGES:
        assert scaled[stage]["n"] == 5
    assert scaled["total"]["p50"] >= scaled["dense"]["p50"]
    assert scaled["vectors"]["recall_at_10"] == 1.0  # flat: exact
    assert "recall_at_10_pq_only" not in scaled["vectors"]
    added = scaled["add_paper"]  # embedded by the real model, then found by both searches
    assert added["found_dense"] and added["found_bm25"]
    assert added["chunks"] == bench_query.ADDED_CHUNKS and added["searchable_s"] > 0
    assert doc["figures"]["ivfpq"] == []


@pytest.mark.slow
def test_pages_benchmark_on_the_kept_library(ingest_run: tuple[dict, Path],
                                             tmp_path: Path) -> None:
    doc_ingest, library = ingest_run
    bench_pages.run("tiny", tmp_path, SHARED, library=library)
    doc = read_results(tmp_path / "pages.json", "pages")
    latency, accuracy = doc["figures"]["latency"], doc["figures"]["accuracy"]
    assert latency["chunks"] == bench_pages.SAMPLES["tiny"]
    for case in ("cold_ms", "cached_ms", "cold_cpu_ms", "cached_cpu_ms"):
        assert latency[case]["n"] == latency["chunks"] and latency[case]["p50"] > 0
    assert accuracy["chunks"] == doc_ingest["figures"]["whole_ingest"]["chunks"]
    assert 0 < accuracy["fully_matched"] <= accuracy["chunks"]
    assert accuracy["share_fully_matched"] == round(
        accuracy["fully_matched"] / accuracy["chunks"], 4)
    assert "no copy of the PDF" not in accuracy["missed_runs_by_cause"]


def test_fitted_vectors_keep_the_shape_of_the_real_ones() -> None:
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((8, synthetic.DIM))  # real-like: a few directions, one mean
    real = rng.standard_normal((500, 8)) @ basis + 3 * rng.standard_normal(synthetic.DIM)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    fitted = synthetic.Sampler("fitted", rng, real.astype(np.float32))(2_000)
    iso = synthetic.Sampler("random", rng)(2_000)
    assert fitted.shape == iso.shape == (2_000, synthetic.DIM) and fitted.dtype == np.float32
    assert np.allclose(np.linalg.norm(fitted, axis=1), 1.0, atol=1e-5)
    # same mean direction as the real vectors; isotropic ones have none
    mean = real.mean(axis=0) / np.linalg.norm(real.mean(axis=0))
    assert float(fitted.mean(axis=0) @ mean) > 0.5 > abs(float(iso.mean(axis=0) @ mean)) + 0.4
    with pytest.raises(ValueError, match="real chunk vectors"):
        synthetic.Sampler("fitted", rng, None)


@pytest.mark.slow
def test_streamed_ivfpq_measures_recall_build_and_the_shard_merge(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, synthetic.DIM))
    real = centres[rng.integers(0, 20, 1_000)] + 0.3 * rng.standard_normal((1_000, synthetic.DIM))
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    sampler = synthetic.Sampler("fitted", rng, real.astype(np.float32))
    configs = {"small": IndexSettings(use_gpu="never", build_threads=1, pq_m=16, ivf_nlist=32,
                                      ivf_nprobe=8, train_sample=3_000, shard_size=1_600)}
    indexes, fig = large.ivfpq_at_scale(3_000, sampler, configs, 20, 5, 10, tmp_path)
    index = indexes["small"]
    assert len(index) == 3_000 and [s.ntotal for s in index.shards] == [1_600, 1_400]
    assert fig["build"]["small"]["build_s"] >= fig["build"]["small"]["train_s"] >= 0
    assert fig["build"]["peak_rss_mib"] > 0
    described = fig["configs"]["small"]["index"]
    assert (described["pq_m"], described["pq_nbits"], described["shards"]) == (16, 8, 2)
    assert described["file_mib"] > 0
    sweep = fig["configs"]["small"]["sweep"]
    assert [r["nprobe"] for r in sweep] == list(large.NPROBES)
    for row in sweep:  # re-scoring more candidates with the exact vectors only finds more
        recalls = [row["recall_at_10"]] + [row[f"recall_at_10_rerank_{r}"]
                                           for r in large.RERANKS[1:]]
        assert recalls == sorted(recalls) and 0 < recalls[0] < 1.0
        assert {"p50", "p95"} <= set(row["pq_only"]["wall"]) | set(row["reranked"]["cpu"])
    assert sweep[-1]["recall_at_10_rerank_10"] >= 0.9
    merge = fig["shard_merge"]  # our merge returns what FAISS's IndexShards returns
    assert merge["shards"] == 2 and merge["same_rows"] == 1.0
    assert {"sequential", "faiss_index_shards", "parallel_merge"} <= set(merge)


@pytest.mark.slow
@pytest.mark.llm
def test_answer_benchmark_against_the_server(ingest_run: tuple[dict, Path], llm_url: str,
                                             tmp_path: Path) -> None:
    _, library = ingest_run
    bench_answer.run("tiny", tmp_path, SHARED, llm_url, library=library)
    doc = read_results(tmp_path / "answer.json", "answer")
    f = doc["figures"]
    assert f["questions"] + f["abstained"] == len(doc["settings"]["questions"]) > 0
    assert f["questions"] > 0, "no dev question about BART was answered"
    for key in ("ask_ttft_ms", "server_ttft_ms", "overhead_ms", "retrieval_ms"):
        assert f[key]["n"] == f["questions"] * f["reps"]
    assert f["model"]


@pytest.mark.slow
@pytest.mark.llm
def test_rewrite_benchmark_against_the_server(ingest_run: tuple[dict, Path], llm_url: str,
                                              tmp_path: Path) -> None:
    _, library = ingest_run  # BART only: one Japanese question and one follow-up about it
    bench_rewrite.run("tiny", tmp_path, SHARED, library, llm_url)
    doc = read_results(tmp_path / "rewrite.json", "rewrite")
    f = doc["figures"]
    assert doc["settings"]["questions"] == ["ja08", "fu10"]
    for mode in bench_rewrite.MODES:
        assert f[mode]["japanese"]["n"] == f[mode]["follow-up"]["n"] == 1, mode
        assert f[mode]["rewrite_ms"]["n"] == 2
    queries = {m: {q["id"]: q["query"] for q in f[m]["queries"]} for m in bench_rewrite.MODES}
    assert queries["none"]["ja08"].startswith("BARTは")  # as typed
    assert "BART" in queries["terms"]["ja08"] and "は" not in queries["terms"]["ja08"]
    # joined to the previous question, which does not name the paper
    assert queries["terms"]["fu10"].startswith("How is it pre-trained?")
    assert "BART" not in queries["terms"]["fu10"]
    for mode in bench_rewrite.MODES:
        assert f[mode]["rewrite_and_retrieval_ms"]["p50"] >= f[mode]["rewrite_ms"]["p50"]
    assert f["model_name"]


def test_answer_benchmark_skips_without_a_server(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_answer.main(["--llm-url", "", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "PAPERCHAT_TEST_LLM_URL" in out
    assert not list(tmp_path.iterdir())


def test_runner_rejects_an_unknown_size() -> None:
    proc = subprocess.run([str(REPO / "scripts" / "run_benchmarks.sh"), "huge"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_table_and_percentiles() -> None:
    assert percentiles([1.0, 2.0, 3.0, 4.0])["p50"] == 2.5
    assert percentiles([])["n"] == 0
    table = markdown_table(["a", "b"], [[1, 0.12345], ["x", 1234.4]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| x | 1,234 |"]
