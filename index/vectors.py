"""FAISS vector index over chunk vectors: exact (flat) for small libraries, HNSW from
``index.approx_threshold`` chunks on; inner product on normalised vectors (= cosine). Row
positions map to chunk ids through an id array saved beside it.

HNSW's search breadth is ``index.hnsw_ef_search`` up to 1e5 vectors and grows above (see
``ef_search``) so that recall@10 stays at 0.95 or more, as measured on vectors shaped like
the real ones.

Threads are set per call: a single query runs with ``index.threads`` OpenMP threads (one
is fastest on a small CPU, see benchmarks/bench_query.py), building HNSW with every core.

Chunks of removed papers stay in an HNSW graph (it cannot delete) as rows masked out of
every search (their id set to -1), up to MAX_MASKED of the rows; beyond, the library
rebuilds the index. A flat index is rebuilt instead (a moment's work).

GPU: with faiss-gpu and a CUDA device (``index.use_gpu``) the index stays flat (exact) up to
``GPU_FLAT_MAX`` vectors and unfiltered searches run on a GPU copy of it. Filtered searches
(``allowed``) run on the CPU: exact over the allowed rows when they are at most
``EXACT_SUBSET_MAX``, else through the index with an ID selector.

Threads: a VectorIndex is never changed while others may search it (the library copies it,
``copy``, and changes the copy); searches on the CPU run in parallel (HNSW's search breadth
is passed per call, never set on the shared index); searches on a GPU copy are serialised
(FAISS GPU indexes are not thread-safe, not even for searches).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.errors import ConfigError
from core.settings import IndexSettings

log = logging.getLogger(__name__)
_FAISS: Any = faiss  # its bundled type stubs lack the search parameter classes

EXACT_SUBSET_MAX = 20_000  # allowed rows searched exactly (about 2 ms at 384-d on one core)
EF_BASE_N = 100_000  # hnsw_ef_search holds up to this many vectors, then grows:
EF_GROWTH = 0.55  # 128 at 1e5 -> 455 at 1e6 (benchmarks/results/query.json, fitted vectors:
# efSearch 128 at 1e5: recall@10 0.968, 0.9 ms; 384 / 448 / 512 at 1e6: 0.957 / 0.966 /
# 0.971 at 4.3 / 4.0 / 4.6 ms; 448 keeps a margin on both the recall and the 5 ms target)
MAX_MASKED = 0.2  # HNSW rows of removed chunks masked out, up to this share, then rebuilt
GPU_FLAT_MAX = 20_000_000  # flat on the GPU up to this many vectors (30 GB at 384-d, fp32)


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def build_threads() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


@contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """FAISS's OpenMP thread count for one block (restored after)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def searches_on_gpu(kind: str, settings: IndexSettings, gpus: int) -> bool:
    """Whether unfiltered searches of a ``kind`` index run on the GPU (FAISS has no GPU
    HNSW). ``use_gpu='always'`` without a GPU is a configuration error."""
    if settings.use_gpu == "never":
        return False
    if gpus == 0:
        if settings.use_gpu == "always":
            raise ConfigError("index.use_gpu is 'always', but FAISS sees no GPU.",
                              "Install faiss-gpu-cu12 on a CUDA machine, or set "
                              "index.use_gpu to 'auto'.")
        return False
    return kind == "flat"


def choose_kind(n: int, settings: IndexSettings, gpus: int | None = None) -> str:
    """'flat' (exact) below ``approx_threshold`` chunks, or on a GPU up to GPU_FLAT_MAX;
    'hnsw' otherwise."""
    gpus = gpu_count() if gpus is None else gpus
    if n <= GPU_FLAT_MAX and searches_on_gpu("flat", settings, gpus):
        return "flat"
    return "hnsw" if n >= settings.approx_threshold else "flat"


def ef_search(n: int, settings: IndexSettings, k: int) -> int:
    """HNSW search breadth for ``n`` vectors and ``k`` results (see EF_GROWTH)."""
    scale = max(1.0, n / EF_BASE_N) ** EF_GROWTH
    return max(k, round(settings.hnsw_ef_search * scale))


def new_faiss_index(kind: str, dim: int, settings: IndexSettings) -> Any:
    """An empty FAISS index of ``kind`` with the settings' parameters."""
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = settings.hnsw_ef_search
        return index
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    raise ConfigError(f"Unknown vector index kind {kind!r}.", "Run `paperchat reindex`.")


def top_k_exact(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row numbers) of the ``k`` best inner products, best first."""
    scores = vectors @ query
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return scores[top], top


class VectorIndex:
    def __init__(self, dim: int, settings: IndexSettings, kind: str = "flat") -> None:
        self.dim = dim
        self.settings = settings
        self.kind = kind
        self.ids = np.zeros(0, dtype=np.int64)
        self.index: Any = new_faiss_index(kind, dim, settings)
        self._gpus = gpu_count()
        self._gpu_index: Any = None
        self._gpu_res: Any = None
        self._selector: tuple[Any, Any] | None = None  # (inner, IDSelectorNot(inner))
        self._selector_stale = True  # the masked rows changed since it was made
        self._lock = threading.Lock()  # the lazily made selector and GPU copy; GPU searches

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with omp_threads(build_threads()):  # HNSW inserts in parallel
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self._gpu_index = self._gpu_res = None

    def copy(self, *, deep: bool) -> VectorIndex:
        """A copy to change while searches run on this one: ``deep`` clones the FAISS index
        (to ``add`` to it), else the copy shares it (to ``mask_missing`` only)."""
        other = copy.copy(self)
        other.ids = self.ids.copy()
        if deep:
            other.index = faiss.clone_index(self.index)
        other._gpu_index = other._gpu_res = other._selector = None
        other._selector_stale = True
        other._lock = threading.Lock()
        return other

    @property
    def max_id(self) -> int:
        return int(self.ids.max()) if len(self.ids) else 0

    def mask_missing(self, live_ids: np.ndarray) -> bool:
        """Mask out the rows whose chunk is not in ``live_ids`` (removed papers) without a
        rebuild; False, masking nothing, when that is not worth it: a flat index (rebuilt in
        a moment) or more than MAX_MASKED of the rows masked."""
        gone = (self.ids >= 0) & ~np.isin(self.ids, live_ids)
        masked = np.count_nonzero(self.ids < 0) + np.count_nonzero(gone)
        if self.kind != "hnsw" or masked > MAX_MASKED * len(self.ids):
            return False
        self.ids = np.where(gone, -1, self.ids)
        self._selector_stale = True
        return True

    def _live_selector(self) -> Any:
        """A FAISS selector of the rows not masked out, or None when none is. Made once per
        change of the masked rows (not per query); the inner selector is kept alive beside
        the one that wraps it."""
        with self._lock:
            if self._selector_stale:
                masked = np.flatnonzero(self.ids < 0).astype(np.int64)
                inner = faiss.IDSelectorBatch(masked) if len(masked) else None
                self._selector = ((inner, faiss.IDSelectorNot(inner)) if inner is not None
                                  else None)
                self._selector_stale = False
            return self._selector[1] if self._selector is not None else None

    def _search_gpu(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One search on the GPU copy (made on first use), one thread at a time."""
        with self._lock:
            if self._gpu_index is None:
                self._gpu_res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self.index)
            scores, pos = self._gpu_index.search(q, k)
        return scores, pos

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (chunk id, cosine) for one query vector; ``allowed`` restricts to chunk ids."""
        if len(self) == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        k = min(k, len(self))
        with omp_threads(self.settings.threads):
            if allowed is None:
                scores, pos = self._search_all(q, k)
            else:
                positions = np.flatnonzero(np.isin(self.ids, allowed)).astype(np.int64)
                if len(positions) == 0:
                    return []
                scores, pos = self._search_rows(q, min(k, len(positions)), positions)
        return [(int(self.ids[p]), float(s)) for p, s in zip(pos, scores, strict=True) if p >= 0]

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind != "hnsw":
            if searches_on_gpu(self.kind, self.settings, self._gpus):
                scores, pos = self._search_gpu(q, k)
            else:
                scores, pos = self.index.search(q, k)
            return scores[0], pos[0]
        ef = ef_search(len(self), self.settings, k)
        sel = self._live_selector()
        params = (_FAISS.SearchParametersHNSW(efSearch=ef) if sel is None
                  else _FAISS.SearchParametersHNSW(sel=sel, efSearch=ef))
        scores, pos = self.index.search(q, k, params=params)
        return scores[0], pos[0]

    def _search_rows(self, q: np.ndarray, k: int,
                     positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search only the rows ``positions``: exactly when they are few (a graph search with
        a selector misses rows when most of the graph is filtered out), else by selector."""
        if len(positions) <= EXACT_SUBSET_MAX:
            scores, top = top_k_exact(self.index.reconstruct_batch(positions), q[0], k)
            return scores, positions[top]
        sel = faiss.IDSelectorBatch(positions)
        ef = ef_search(len(self), self.settings, k)
        params = (_FAISS.SearchParametersHNSW(sel=sel, efSearch=ef) if self.kind == "hnsw"
                  else _FAISS.SearchParameters(sel=sel))
        scores, pos = self.index.search(q, k, params=params)
        return scores[0], pos[0]

    def save(self, directory: Path) -> None:
        """Write into ``directory`` (the caller renames the directory into place)."""
        faiss.write_index(self.index, str(directory / "vectors.faiss"))
        np.save(directory / "ids.npy", self.ids)

    @classmethod
    def load(cls, directory: Path, dim: int, settings: IndexSettings, kind: str) -> VectorIndex:
        """Raises RuntimeError (FAISS) or OSError/ValueError (NumPy) when a file is missing,
        truncated or does not match the other."""
        vi = cls(dim, settings, kind)
        vi.index = faiss.read_index(str(directory / "vectors.faiss"))
        vi.ids = np.load(directory / "ids.npy")
        if len(vi.ids) != vi.index.ntotal or vi.index.d != dim:
            raise ValueError(f"{directory}: {len(vi.ids)} ids for {vi.index.ntotal} vectors "
                             f"of {vi.index.d} dimensions (expected {dim})")
        return vi
