"""Indexes that scale (issue 11): the kind chosen by size and setting, IVF-PQ trained on a
sample (pending rows until then), shards searched in parallel and merged, masked rows,
files of several shards, and a library that crosses into IVF-PQ."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from core.errors import ConfigError
from core.settings import IndexSettings
from index.kinds import IVFPQ_MIN_ROWS, choose_kind, ivfpq_layout, nlist_of, train_ivfpq
from index.vectors import MAX_MASKED, STALE, VectorIndex, merge_top_k, shard_file
from tests.helpers import make_settings
from tests.test_library_index import CHUNKS, add, built, open_library, snapshot, top_paper

DIM = 64
ROWS = 4_000


def cfg(**values: object) -> IndexSettings:
    base: dict[str, object] = {"use_gpu": "never", "build_threads": 1}
    return IndexSettings.model_validate(base | values)


def pq(**values: object) -> IndexSettings:
    """Small IVF-PQ: 16 bytes a vector, 16 lists."""
    return cfg(**({"pq_m": 16, "ivf_nlist": 16, "ivf_nprobe": 8, "train_sample": 2_048}
                  | values))


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 centres, spread in a 16-d subspace (real embeddings cluster
    and have a low intrinsic dimension; isotropic ones defeat any index)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    basis = rng.standard_normal((16, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = (centres[rng.integers(0, 50, n)]
         + 0.3 * rng.standard_normal((n, 16)).astype(np.float32) @ basis)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return [int(ids[i]) for i in np.argsort(-(x @ q), kind="stable")[:k]]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(1_000, 1_000 + ROWS), clustered(ROWS)


@pytest.fixture(scope="module")
def saved(data: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An IVF-PQ index of ``data`` with the ``pq()`` settings, saved once for several tests."""
    ids, x = data
    folder = tmp_path_factory.mktemp("ivfpq")
    build(pq(), "ivfpq", ids, x).save(folder)
    return folder


def build(settings: IndexSettings, kind: str, ids: np.ndarray, x: np.ndarray,
          batch: int = 5_000) -> VectorIndex:
    index = VectorIndex(DIM, settings, kind)
    for start in range(0, len(ids), batch):
        index.add(ids[start:start + batch], x[start:start + batch])
    return index


# ------------------------------------------------------------------ the kind


def test_the_kind_follows_the_library_size_and_the_setting() -> None:
    s = cfg(approx_threshold=20_000, ivfpq_threshold=1_000_000)
    assert [choose_kind(n, s, gpus=0) for n in (19_999, 20_000, 999_999, 1_000_000)] == [
        "flat", "hnsw", "hnsw", "ivfpq"]
    assert choose_kind(10**8, cfg(kind="hnsw"), gpus=0) == "hnsw"
    assert choose_kind(100, cfg(kind="flat"), gpus=0) == "flat"
    assert choose_kind(50_000, cfg(kind="ivfpq"), gpus=0) == "ivfpq"
    # IVF-PQ cannot train its codebooks on a few rows: a small library stays exact
    assert choose_kind(IVFPQ_MIN_ROWS - 1, cfg(kind="ivfpq"), gpus=0) == "flat"
    assert choose_kind(IVFPQ_MIN_ROWS - 1, cfg(ivfpq_threshold=10, approx_threshold=100),
                       gpus=0) == "hnsw"


def test_every_index_setting_is_described_and_unknown_kinds_are_refused() -> None:
    for name, field in IndexSettings.model_fields.items():
        assert field.description, name
    with pytest.raises(ValueError, match="kind"):
        IndexSettings.model_validate({"kind": "annoy"})
    with pytest.raises(ValueError, match="pq_nbits"):
        IndexSettings.model_validate({"pq_nbits": 6})


def test_a_code_size_that_does_not_divide_the_vectors_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"pq_m = 7 does not divide the vector size 64"):
        train_ivfpq(clustered(2_000), pq(pq_m=7))


# ------------------------------------------------------------------ IVF-PQ


def test_ivfpq_trains_on_the_first_rows_then_finds_the_nearest(data: tuple) -> None:
    ids, x = data
    settings = pq()
    index = VectorIndex(DIM, settings, "ivfpq")
    index.add(ids[:1_500], x[:1_500])
    assert index.shards == [] and len(index) == 1_500  # pending: fewer than train_sample
    index.add(ids[1_500:], x[1_500:])  # reaches train_sample: trains, then stores
    assert len(index.shards) == 1 and index.shards[0].ntotal == ROWS and not index._pending
    assert ivfpq_layout(index.shards[0]) == (16, 8, False)
    assert nlist_of(index.shards[0]) == 16
    queries = clustered(50, seed=9)
    hits = sum(len({c for c, _ in index.search(q, 10)} & set(exact_top(x, ids, q, 10)))
               for q in queries)
    assert hits / 500 >= 0.4  # 16 bytes a vector: approximate, far above chance (10 / 4,000)
    cid, score = index.search(x[77], 1)[0]
    assert cid == ids[77] and score == pytest.approx(1.0, abs=0.1)


def test_pending_rows_are_searchable_before_training_would_start(data: tuple) -> None:
    ids, x = data
    index = VectorIndex(DIM, pq(train_sample=10**6), "ivfpq")
    index.add(ids[:2_500], x[:2_500])
    assert index.shards == []
    assert index.search(x[5], 1)[0][0] == ids[5]  # the search trains on what there is
    assert index.shards[0].ntotal == 2_500


def test_a_given_sample_trains_the_index_before_any_row(data: tuple) -> None:
    ids, x = data
    index = VectorIndex(DIM, pq(), "ivfpq")
    index.train(x[::3])
    index.add(ids[:100], x[:100])  # too few to train on: trained already
    assert index.shards[0].ntotal == 100 and not index._pending
    assert index.search(x[42], 1)[0][0] == ids[42]


@pytest.mark.parametrize("extra", [
    {"pq_nbits": 4, "pq_m": 32}, pytest.param({"opq": True}, marks=pytest.mark.slow)])
def test_fast_scan_and_opq_variants_search_and_reload(extra: dict, data: tuple,
                                                      tmp_path: Path) -> None:
    ids, x = data
    settings = pq(**extra)
    index = build(settings, "ivfpq", ids, x)
    assert ivfpq_layout(index.shards[0]) == (settings.pq_m, settings.pq_nbits, settings.opq)
    found = [c for c, _ in index.search(x[10], 10)]
    assert ids[10] in found
    index.save(tmp_path)
    again = VectorIndex.load(tmp_path, DIM, settings, "ivfpq")
    assert again.kind == "ivfpq" and [c for c, _ in again.search(x[10], 10)] == found


def test_filtered_ivfpq_search_ranks_the_allowed_rows_by_decoded_vectors(data: tuple,
                                                                         saved: Path) -> None:
    ids, x = data
    index = VectorIndex.load(saved, DIM, pq(), "ivfpq")
    allowed = ids[::37]
    got = index.search(x[222], 10, allowed)
    assert got[0][0] == ids[222] and {c for c, _ in got} <= set(allowed)
    decoded = index.shards[0].reconstruct_batch(np.arange(0, ROWS, 37))
    assert [c for c, _ in got] == exact_top(decoded, allowed, x[222], 10)


# ------------------------------------------------------------------ shards


def test_exact_vectors_rescore_the_ivfpq_candidates(data: tuple) -> None:
    ids, x = data
    index = build(pq(pq_m=4, ivfpq_rerank=4), "ivfpq", ids, x)  # 4 bytes: coarse scores
    by_id = dict(zip(ids.tolist(), x, strict=True))
    asked: list[int] = []

    def exact(chunk_ids: np.ndarray) -> np.ndarray:
        asked.append(len(chunk_ids))
        return np.stack([by_id[int(c)] for c in chunk_ids])

    queries = clustered(30, seed=5)
    plain = [index.search(q, 10) for q in queries]
    rescored = [index.search(q, 10, exact=exact) for q in queries]
    assert asked and all(n == 40 for n in asked)  # ivfpq_rerank x k candidates
    truth = [exact_top(x, ids, q, 10) for q in queries]
    recall = [sum(len({c for c, _ in f} & set(t)) for f, t in zip(found, truth, strict=True))
              for found in (plain, rescored)]
    assert recall[1] > recall[0]
    for q, found in zip(queries, rescored, strict=True):
        assert [s for _, s in found] == pytest.approx(
            [float(by_id[c] @ q) for c, _ in found], abs=1e-5)  # exact cosines, best first
    index.exact = exact  # the attribute serves when no function is passed (benchmarks)
    assert index.search(queries[0], 10) == rescored[0]
    assert build(cfg(), "flat", ids, x).search(queries[0], 10, exact=exact) and asked[-1] == 40


def test_a_copy_shares_the_full_shards_and_changes_apart(data: tuple) -> None:
    ids, x = data
    index = build(cfg(shard_size=1_500), "flat", ids, x)
    other = index.copy(deep=True)
    assert other.shards[0] is index.shards[0] and other.shards[1] is index.shards[1]
    assert other.shards[2] is not index.shards[2]  # the one still filling is cloned
    more = clustered(800, seed=3)
    other.add(np.arange(90_000, 90_800), more)
    assert [s.ntotal for s in other.shards] == [1_500, 1_500, 1_500, 300]
    assert [s.ntotal for s in index.shards] == [1_500, 1_500, 1_000] and len(index) == ROWS
    assert other.search(more[0], 1)[0][0] == 90_000
    assert index.search(more[0], 1)[0][0] != 90_000
    masked = index.copy(deep=False)
    assert masked.mask_missing(ids[1:]) is False  # flat: rebuilt instead
    hnsw = build(cfg(shard_size=1_500), "hnsw", ids, x)
    view = hnsw.copy(deep=False)
    assert view.mask_missing(ids[1:]) is True
    assert ids[0] not in [c for c, _ in view.search(x[0], 5)]
    assert hnsw.search(x[0], 1)[0][0] == ids[0]  # the original is untouched


def test_a_saved_index_missing_a_shard_file_does_not_load(data: tuple, tmp_path: Path) -> None:
    ids, x = data
    build(cfg(shard_size=1_500), "flat", ids, x).save(tmp_path)
    (tmp_path / shard_file(2)).unlink()
    with pytest.raises(ValueError, match="4000 ids for 3000 vectors"):
        VectorIndex.load(tmp_path, DIM, cfg(shard_size=1_500), "flat")




def test_shards_fill_in_order_and_merge_to_the_exact_answer(data: tuple) -> None:
    ids, x = data
    whole = build(cfg(), "flat", ids, x)
    sharded = build(cfg(shard_size=1_500), "flat", ids, x, batch=1_000)
    assert [s.ntotal for s in sharded.shards] == [1_500, 1_500, 1_000]
    for q in clustered(20, seed=4):
        assert sharded.search(q, 25) == whole.search(q, 25)
    assert sharded.search(q, 25) and sharded.search(q, 25)[0][0] == exact_top(x, ids, q, 1)[0]


def test_merge_keeps_the_best_of_every_shard() -> None:
    a = (np.array([0.9, 0.5], dtype=np.float32), np.array([3, 1]))
    b = (np.array([0.95, 0.2, -1.0], dtype=np.float32), np.array([10, 11, -1]))
    scores, rows = merge_top_k([a, b], 3)
    assert rows.tolist() == [10, 3, 1] and scores.tolist() == pytest.approx([0.95, 0.9, 0.5])


def test_ivfpq_shards_share_one_training_and_mask_their_own_rows(data: tuple,
                                                                 tmp_path: Path) -> None:
    ids, x = data
    settings = pq(shard_size=1_500)
    index = build(settings, "ivfpq", ids, x)
    assert [s.ntotal for s in index.shards] == [1_500, 1_500, 1_000]
    centroids = [faiss.extract_index_ivf(s).quantizer.reconstruct(0) for s in index.shards]
    assert all(np.array_equal(c, centroids[0]) for c in centroids)
    target = ids[3_500]  # in the third shard
    assert index.search(x[3_500], 1)[0][0] == target
    assert index.mask_missing(ids[ids != target]) is True
    assert target not in [c for c, _ in index.search(x[3_500], 20)]
    index.save(tmp_path)
    files = {p.name for p in tmp_path.glob("vectors*.faiss")}
    assert files == {shard_file(0), shard_file(1), shard_file(2), "vectors-trained.faiss"}
    again = VectorIndex.load(tmp_path, DIM, settings, "ivfpq")
    assert target not in [c for c, _ in again.search(x[3_500], 20)]
    more = clustered(1_000, seed=7)
    again.add(np.arange(50_000, 51_000), more)  # a fourth shard from the saved training
    assert [s.ntotal for s in again.shards] == [1_500, 1_500, 1_500, 500]
    assert again.search(more[3], 1)[0][0] == 50_003


def test_masking_stops_past_its_share_and_flat_rebuilds_instead(data: tuple,
                                                               saved: Path) -> None:
    ids, _ = data
    index = VectorIndex.load(saved, DIM, pq(), "ivfpq")
    keep = ids[: int(len(ids) * (1 - MAX_MASKED)) - 10]
    assert index.mask_missing(ids[int(len(ids) * 0.1):]) is True
    assert index.mask_missing(keep) is False  # more than MAX_MASKED: rebuild instead
    assert VectorIndex(DIM, cfg(), "flat").mask_missing(ids) is False


def test_an_index_built_with_other_pq_settings_is_marked_for_a_rebuild(data: tuple,
                                                                       saved: Path) -> None:
    ids, x = data
    same = VectorIndex.load(saved, DIM, pq(ivf_nprobe=16), "ivfpq")
    assert same.kind == "ivfpq"  # nprobe is a search setting: no rebuild
    other = VectorIndex.load(saved, DIM, pq(pq_m=32), "ivfpq")
    assert other.kind == STALE  # != choose_kind's 'ivfpq': the library rebuilds it
    assert other.search(x[3], 1)[0][0] == ids[3]  # still searchable meanwhile


# ------------------------------------------------------------------ the library


@pytest.mark.slow
def test_a_library_past_the_threshold_switches_to_ivfpq_and_extends_it(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", embedding={"model": "test-embedder"},
        index={"use_gpu": "never", "build_threads": 1, "approx_threshold": 50,
               "ivfpq_threshold": IVFPQ_MIN_ROWS, "pq_m": 4, "ivf_nlist": 16,
               "ivf_nprobe": 16, "train_sample": 4_096, "shard_size": 8_000})
    library = open_library(settings)
    papers = IVFPQ_MIN_ROWS // CHUNKS
    for n in range(papers - 1):
        add(library, n)
    library.refresh()
    assert snapshot(library).vectors.kind == "hnsw"  # type: ignore[union-attr]
    last = add(library, papers - 1)
    library.refresh()
    vectors = snapshot(library).vectors
    assert vectors is not None and vectors.kind == "ivfpq" and len(vectors.shards) == 2
    # 4 bytes a vector rank coarsely: the stored vectors re-score the candidates, so the
    # scores are the exact cosines and a paper's own passage comes first
    hits = library.dense_search(last[5], 3)
    assert top_paper(library, last[5]) == f"p{papers - 1}"
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    info = built(settings)
    assert info["kind"] == "ivfpq" and info["count"] == papers * CHUNKS
    folder = settings.data_dir / "index" / settings.library_key() / str(info["vectors"])
    assert (folder / shard_file(1)).is_file()
    library.close()
    again = open_library(settings)  # a new process: loads, then extends the saved index
    newest = add(again, papers)
    again.refresh()
    assert top_paper(again, newest[0]) == f"p{papers}"
    grown = snapshot(again).vectors
    assert grown is not None and grown.kind == "ivfpq"
    assert [s.ntotal for s in grown.shards] == [8_000, (papers + 1) * CHUNKS - 8_000]
    again.close()
