"""The vector index (index/vectors.py, index/kinds.py) and the GPU code paths, tested on the
CPU wherever their logic is not CUDA-specific: which kinds go to the GPU, the thread
settings around FAISS calls, filtered searches, the HNSW search breadth, and fp16
embeddings (the model is halved on CUDA) coming out as normalised float32 vectors.
IVF-PQ, the choice by size and the shards: tests/test_vectors_scale.py."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from core.errors import ConfigError
from core.settings import EmbeddingSettings, IndexSettings
from index.embedder import SentenceTransformerEmbedder, pick_device
from index.kinds import (
    GPU_FLAT_MAX,
    choose_kind,
    ef_search,
    gpu_count,
    omp_threads,
    search_params,
    searches_on_gpu,
)
from index.vectors import EXACT_SUBSET_MAX, VectorIndex

DIM = 64


def cfg(**values: object) -> IndexSettings:
    return IndexSettings.model_validate(values)


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-(x @ q), kind="stable")[:k]
    return [int(ids[i]) for i in order]


@pytest.mark.parametrize(("use", "gpus", "kind", "expected"), [
    ("auto", 0, "flat", False), ("auto", 1, "flat", True), ("auto", 1, "hnsw", False),
    ("never", 1, "flat", False), ("always", 1, "flat", True), ("always", 1, "hnsw", False),
    ("auto", 0, "ivfpq", False), ("auto", 1, "ivfpq", True), ("never", 1, "ivfpq", False),
])
def test_which_searches_go_to_the_gpu(use: str, gpus: int, kind: str, expected: bool) -> None:
    assert searches_on_gpu(kind, cfg(use_gpu=use), gpus) is expected


def test_gpu_ivfpq_needs_8_bit_codes_and_a_supported_code_size() -> None:
    assert searches_on_gpu("ivfpq", cfg(pq_nbits=4), 1) is False  # fast scan: CPU only
    assert searches_on_gpu("ivfpq", cfg(pq_m=192), 1) is False  # not a GPU code size
    assert searches_on_gpu("ivfpq", cfg(pq_m=48), 1) is True


def test_always_on_gpu_without_one_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"sees no GPU.*use_gpu"):
        searches_on_gpu("flat", cfg(use_gpu="always"), 0)
    with pytest.raises(ConfigError, match=r"sees no GPU"):
        choose_kind(10, cfg(use_gpu="always"), gpus=0)
    if gpu_count() == 0:
        with pytest.raises(ConfigError, match=r"sees no GPU"):
            VectorIndex(DIM, cfg(use_gpu="always"), "ivfpq")


def test_always_on_gpu_with_a_kind_the_gpu_cannot_search_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"no GPU HNSW.*index\.kind"):
        choose_kind(10**5, cfg(use_gpu="always", kind="hnsw"), gpus=1)
    with pytest.raises(ConfigError, match=r"pq_nbits = 8"):
        choose_kind(10**8, cfg(use_gpu="always", pq_nbits=4), gpus=1)
    assert choose_kind(10**5, cfg(use_gpu="auto", kind="hnsw"), gpus=1) == "hnsw"


def test_with_a_gpu_the_index_stays_exact_then_goes_ivfpq() -> None:
    low = cfg(approx_threshold=1_000)
    assert choose_kind(999, low, gpus=0) == "flat"
    assert choose_kind(1_000, low, gpus=0) == "hnsw"
    assert choose_kind(10**6, low, gpus=1) == "flat"
    assert choose_kind(GPU_FLAT_MAX + 1, low, gpus=1) == "ivfpq"  # HNSW has no GPU version
    assert choose_kind(GPU_FLAT_MAX + 1, cfg(pq_nbits=4), gpus=1) == "ivfpq"  # on the CPU
    assert choose_kind(10**5, cfg(approx_threshold=1_000, use_gpu="never"),
                       gpus=1) == "hnsw"


def test_on_this_cpu_machine_searches_stay_on_the_cpu_index() -> None:
    if gpu_count():
        pytest.skip("a GPU is present")
    index = VectorIndex(DIM, cfg(), "flat")
    x = unit(50)
    index.add(np.arange(1, 51), x)
    assert index._on_gpu is False and not index._gpu_shards
    assert index.search(x[7], 1)[0][0] == 8
    assert not index._gpu_shards


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filtered_search_is_exact_over_the_allowed_rows(kind: str) -> None:
    x = unit(3_000, seed=1)
    ids = np.arange(10, 3_010)
    index = VectorIndex(DIM, cfg(hnsw_ef_search=16), kind)
    index.add(ids[:1_000], x[:1_000])
    index.add(ids[1_000:], x[1_000:])
    allowed = ids[::97]  # 31 rows spread over the graph
    for q in unit(5, seed=2):
        got = [cid for cid, _ in index.search(q, 10, allowed)]
        rows = (allowed - 10).astype(int)
        assert got == exact_top(x[rows], allowed, q, 10)
    assert len(index.search(unit(1, 3)[0], 50, allowed)) == len(allowed)
    assert len(allowed) <= EXACT_SUBSET_MAX


def test_hnsw_search_breadth_grows_with_the_library() -> None:
    settings = cfg(hnsw_ef_search=128)
    assert ef_search(10_000, settings, 50) == ef_search(100_000, settings, 50) == 128
    # the measured point: efSearch ~448 at 1e6 (recall@10 0.966, p50 4.0 ms on 2 cores)
    assert ef_search(1_000_000, settings, 50) == pytest.approx(448, abs=10)
    assert ef_search(1_000, cfg(hnsw_ef_search=16), 50) == 50  # never below k
    index = VectorIndex(DIM, cfg(hnsw_ef_search=16), "hnsw")
    index.add(np.arange(1, 101), unit(100))
    shard = index.shards[0]
    assert search_params("hnsw", shard, index.settings, 100, 30).efSearch == 30
    before = shard.hnsw.efSearch
    assert len(index.search(unit(1, 4)[0], 30)) == 30
    assert shard.hnsw.efSearch == before  # per-call parameters: concurrent searches are safe


def test_search_uses_the_configured_threads_and_restores_them() -> None:
    before = faiss.omp_get_max_threads()
    with omp_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    index = VectorIndex(DIM, cfg(threads=1), "hnsw")
    index.add(np.arange(1, 201), unit(200))
    index.search(unit(1, 5)[0], 5)
    assert faiss.omp_get_max_threads() == before


@pytest.mark.slow
def test_fp16_embeddings_come_out_as_normalised_float32() -> None:
    """What the CUDA path changes (``model.half()``) checked on the CPU: vectors stay
    float32, unit length and close to the fp32 ones, so FAISS indexes them unchanged."""
    assert pick_device("cpu") == "cpu"
    if gpu_count() == 0:
        assert pick_device("auto") == "cpu"
    embedder = SentenceTransformerEmbedder(EmbeddingSettings.model_validate({"device": "cpu"}))
    texts = ["Attention is all you need.", "Low-rank adaptation of large language models."]
    full = embedder.embed(texts)
    embedder.model.half()
    half = embedder.embed(texts)
    assert half.dtype == np.float32 and half.flags["C_CONTIGUOUS"]
    assert np.allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-3)
    assert (half * full).sum(axis=1).min() > 0.99
    index = VectorIndex(embedder.dim, cfg(), "flat")
    index.add(np.array([1, 2]), half)
    assert index.search(embedder.embed(["attention"], "query")[0], 1)[0][0] == 1
