"""The vector index over chunk vectors: inner product on normalised vectors (= cosine), of
the kind ``index.kinds.choose_kind`` picks by size (flat, HNSW, IVF-PQ). Row positions map
to chunk ids through an id array saved beside it.

Shards: rows fill FAISS shards of up to ``index.shard_size`` vectors in order; a full shard
is never touched again by an add. Several shards are searched in parallel (a thread each,
up to the cores; FAISS releases the GIL) and their top-k merged here, which also lets each
shard take its own selector of masked rows (FAISS's IndexShards hands every shard the same
search parameters; benchmarks/bench_query.py compares the two).

IVF-PQ is trained before its first row is stored: on a sample given to ``train``, else on
the first ``index.train_sample`` rows added (kept pending until then, or until a search or
save needs them).

Removed papers: their rows are masked out of every search (their id set to -1) up to
MAX_MASKED of the rows in HNSW and IVF-PQ (rebuilding them is slow); beyond, or for a flat
index, ``mask_missing`` says no and the library rebuilds.

Filtered searches (``allowed``) run on the CPU: exact over the allowed rows when they are
at most EXACT_SUBSET_MAX (IVF-PQ rows decoded: the same approximate scores as its
searches), else through the index with an ID selector.

GPU: unfiltered searches of flat and IVF-PQ shards run on GPU copies (see index.kinds),
one at a time per index (``_gpu_lock``: FAISS GPU resources are not thread-safe, not even
for searches); masked rows are dropped from a larger GPU result, or the shard is searched
on the CPU.

Threads: a VectorIndex is never changed while others may search it (the library copies it,
``copy``, and changes the copy: full shards are shared, only the shard still filling is
cloned); CPU searches run in parallel (search breadths go with each call, never set on a
shared FAISS index).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.settings import IndexSettings
from index.kinds import (
    GPU_FLAT_MAX,
    GPU_MAX_K,
    build_threads,
    choose_kind,
    ef_search,
    gpu_count,
    ivfpq_layout,
    new_faiss_index,
    omp_threads,
    search_params,
    searches_on_gpu,
    to_gpu,
    train_ivfpq,
)

__all__ = ["EXACT_SUBSET_MAX", "GPU_FLAT_MAX", "MAX_MASKED", "STALE", "VectorIndex",
           "build_threads", "choose_kind", "ef_search", "gpu_count", "new_faiss_index",
           "omp_threads", "searches_on_gpu"]
log = logging.getLogger(__name__)

EXACT_SUBSET_MAX = 20_000  # allowed rows searched exactly (about 2 ms at 384-d on one core)
MAX_MASKED = 0.2  # rows of removed chunks masked out, up to this share, then rebuilt
STALE = "ivfpq-stale"  # kind of a loaded IVF-PQ index whose PQ settings have changed
TRAINED_FILE = "vectors-trained.faiss"
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()

Result = tuple[np.ndarray, np.ndarray]  # (scores, global rows), best first


def shard_file(i: int) -> str:
    return "vectors.faiss" if i == 0 else f"vectors-{i}.faiss"


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=build_threads(),
                                       thread_name_prefix="faiss-shard")
        return _POOL


def merge_top_k(parts: Sequence[Result], k: int) -> Result:
    """The ``k`` best (score, row) pairs of several shards' results, best first."""
    scores = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    keep = rows >= 0
    scores, rows = scores[keep], rows[keep]
    top = np.argsort(-scores, kind="stable")[:k]
    return scores[top], rows[top]


def top_k_exact(vectors: np.ndarray, query: np.ndarray, k: int) -> Result:
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
        self.kind = kind  # what the library compares with choose_kind's answer
        self._kind = "ivfpq" if kind == STALE else kind  # what the shards are
        self.shards: list[Any] = []
        self._trained: Any = None  # IVF-PQ: the trained empty index new shards copy
        self._pending: list[np.ndarray] = []  # IVF-PQ rows waiting for training
        self._ids = np.zeros(1024, dtype=np.int64)  # grows by doubling; _n rows used
        self._n = 0
        self._write_lock = threading.RLock()
        self._selectors: list[tuple[Any, Any] | None] = []  # per shard: masked rows
        self._masked = np.zeros(0, dtype=np.int64)  # per shard: masked row count
        self._on_gpu = searches_on_gpu(self._kind, settings, gpu_count())
        self._gpu_lock = threading.Lock()
        self._gpu_resources: dict[int, Any] = {}
        self._gpu_shards: dict[int, Any] = {}
        # The exact vectors of chunk ids, in the order asked (the library's store): IVF-PQ
        # results are re-scored with them (index.ivfpq_rerank candidates per result).
        self.exact: Callable[[np.ndarray], np.ndarray] | None = None

    # -- rows ------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Chunk id of each row (-1: masked out)."""
        return self._ids[:self._n]

    @ids.setter
    def ids(self, value: np.ndarray) -> None:
        self._ids = np.array(value, dtype=np.int64)
        self._n = len(self._ids)

    def __len__(self) -> int:
        return self._n

    @property
    def max_id(self) -> int:
        return int(self.ids.max()) if self._n else 0

    def _offsets(self) -> np.ndarray:
        """First global row of each shard, and the row count after the last."""
        return np.cumsum([0] + [int(s.ntotal) for s in self.shards])

    def copy(self, *, deep: bool) -> VectorIndex:
        """A copy to change while searches run on this one: ``deep`` (to ``add`` to it)
        clones the shard still filling, the only one an add touches; full shards, and every
        shard otherwise (to ``mask_missing`` only), are shared."""
        self._flush()
        other = copy.copy(self)
        other._ids = self.ids.copy()
        other.shards = list(self.shards)
        if deep and self.shards and self.shards[-1].ntotal < self.settings.shard_size:
            other.shards[-1] = faiss.clone_index(self.shards[-1])
        other._pending = []
        other._selectors = list(self._selectors)
        other._masked = self._masked.copy()
        other._write_lock = threading.RLock()
        other._gpu_lock = threading.Lock()
        other._gpu_resources, other._gpu_shards = {}, {}
        return other

    # -- adding ----------------------------------------------------------------------
    def train(self, sample: np.ndarray, centroids: np.ndarray | None = None) -> None:
        """Train an empty IVF-PQ index on ``sample`` (e.g. a random sample of the library)
        instead of on the first rows added; ``centroids`` skip its coarse k-means."""
        if self._kind == "ivfpq" and self._trained is None:
            with omp_threads(build_threads(self.settings)):
                self._trained = train_ivfpq(np.ascontiguousarray(sample, dtype=np.float32),
                                            self.settings, centroids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._write_lock:
            while self._n + len(ids) > len(self._ids):
                self._ids = np.concatenate([self._ids, np.zeros_like(self._ids)])
            self._ids[self._n:self._n + len(ids)] = ids
            self._n += len(ids)
            if self._kind == "ivfpq" and self._trained is None:
                self._pending.append(x)
                if sum(len(p) for p in self._pending) >= self.settings.train_sample:
                    self._flush()
                return
            self._store(x)

    def flush(self) -> None:
        """Train IVF-PQ on the pending rows, then store them (before the index is shared:
        a search would otherwise do it)."""
        self._flush()

    def _flush(self) -> None:
        """Train IVF-PQ on the pending rows, then store them."""
        with self._write_lock:
            if not self._pending:
                return
            pending = np.concatenate(self._pending)
            self._pending = []
            if self._trained is None:
                sample = pending
                if len(sample) > self.settings.train_sample:
                    rng = np.random.default_rng(0)
                    sample = sample[rng.choice(len(sample), self.settings.train_sample,
                                               replace=False)]
                self.train(sample)
            self._store(pending)

    def _new_shard(self) -> Any:
        if self._kind == "ivfpq":
            return faiss.clone_index(self._trained)
        return new_faiss_index(self._kind, self.dim, self.settings)

    def _store(self, x: np.ndarray) -> None:
        """Add rows to the last shard, starting new shards as each fills."""
        size = self.settings.shard_size
        start = 0
        while start < len(x):
            if not self.shards or self.shards[-1].ntotal >= size:
                self.shards.append(self._new_shard())
                self._selectors.append(None)
                self._masked = np.append(self._masked, 0)
            part = x[start:start + size - int(self.shards[-1].ntotal)]
            with omp_threads(build_threads(self.settings)):
                self.shards[-1].add(part)
            with self._gpu_lock:
                self._gpu_shards.pop(len(self.shards) - 1, None)
            start += len(part)

    # -- removed rows ----------------------------------------------------------------
    def mask_missing(self, live_ids: np.ndarray) -> bool:
        """Mask out the rows whose chunk is not in ``live_ids`` (removed papers) without a
        rebuild; False, masking nothing, when that is not worth it: a flat index (rebuilt in
        a moment) or more than MAX_MASKED of the rows masked."""
        self._flush()
        ids = self.ids
        gone = (ids >= 0) & ~np.isin(ids, live_ids)
        masked = np.count_nonzero(ids < 0) + np.count_nonzero(gone)
        if self._kind == "flat" or masked > MAX_MASKED * len(ids):
            return False
        ids[gone] = -1
        self._make_selectors()
        return True

    def _make_selectors(self) -> None:
        """Per shard: a FAISS selector of the rows not masked out (None when none is), with
        the inner selector kept alive beside the one that wraps it."""
        offsets = self._offsets()
        masked = np.flatnonzero(self.ids[:offsets[-1]] < 0).astype(np.int64)
        self._selectors, counts = [], []
        for i in range(len(self.shards)):
            local = masked[(masked >= offsets[i]) & (masked < offsets[i + 1])] - offsets[i]
            inner = faiss.IDSelectorBatch(local) if len(local) else None
            self._selectors.append((inner, faiss.IDSelectorNot(inner)) if inner else None)
            counts.append(len(local))
        self._masked = np.asarray(counts, dtype=np.int64)

    # -- searching -------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
               exact: Callable[[np.ndarray], np.ndarray] | None = None,
               ) -> list[tuple[int, float]]:
        """Top-k (chunk id, cosine) for one query vector; ``allowed`` restricts to chunk ids.
        IVF-PQ: ``exact`` (else ``self.exact``) gives the exact vectors of chunk ids, which
        re-score its ``index.ivfpq_rerank`` x k best candidates."""
        exact = exact if exact is not None else self.exact
        if self._n == 0 or k <= 0:
            return []
        if self._pending:
            self._flush()
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        k = min(k, self._n)
        reranks = self._kind == "ivfpq" and exact is not None and self.settings.ivfpq_rerank
        fetch = min(self._n, k * self.settings.ivfpq_rerank) if reranks else k
        if allowed is None:
            scores, rows = self._search_shards(q, fetch)
        else:
            positions = np.flatnonzero(np.isin(self.ids, allowed)).astype(np.int64)
            if len(positions) == 0:
                return []
            scores, rows = self._search_rows(q, min(fetch, len(positions)), positions)
        if reranks and exact is not None:
            scores, rows = self._rerank(q[0], rows, k, exact)
        ids = self.ids
        return [(int(ids[r]), float(s)) for r, s in zip(rows, scores, strict=True)
                if r >= 0 and ids[r] >= 0]

    def _rerank(self, q: np.ndarray, rows: np.ndarray, k: int,
                exact: Callable[[np.ndarray], np.ndarray]) -> Result:
        """The ``k`` best of ``rows`` by their exact vectors' inner product with ``q``."""
        rows = rows[(rows >= 0) & (self.ids[np.maximum(rows, 0)] >= 0)]
        scores = np.asarray(exact(self.ids[rows]), dtype=np.float32) @ q
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top], rows[top]

    def _map(self, fn: Callable[[int], Result]) -> list[Result]:
        """``fn(shard)`` for every shard: in parallel threads when there are several."""
        threads = self.settings.threads

        def run(i: int) -> Result:
            with omp_threads(threads):  # OpenMP settings are per thread
                return fn(i)

        if len(self.shards) == 1:
            return [run(0)]
        return list(_pool().map(run, range(len(self.shards))))

    def _search_shards(self, q: np.ndarray, k: int) -> Result:
        offsets = self._offsets()

        def one(i: int) -> Result:
            scores, pos = self._search_shard(i, q, k)
            return scores, np.where(pos >= 0, pos + offsets[i], -1)

        return merge_top_k(self._map(one), k)

    def _search_shard(self, i: int, q: np.ndarray, k: int, sel: Any = None) -> Result:
        """One shard's top-k local rows, skipping its masked rows (or keeping only ``sel``)."""
        shard = self.shards[i]
        k = min(k, int(shard.ntotal))
        if sel is None and self._on_gpu:
            found = self._search_gpu(i, q, k)
            if found is not None:
                return found
        masked = self._selectors[i]
        if sel is None and masked is not None:
            sel = masked[1]
        params = search_params(self._kind, shard, self.settings, int(shard.ntotal), k, sel)
        scores, pos = shard.search(q, k, params=params)
        return scores[0], pos[0]

    def _search_gpu(self, i: int, q: np.ndarray, k: int) -> Result | None:
        """The shard's top-k on its GPU copy, masked rows dropped; None when too many of the
        rows found were masked (the caller searches the CPU copy with a selector)."""
        fetch = min(k + int(self._masked[i]), GPU_MAX_K, int(self.shards[i].ntotal))
        if fetch < k:
            return None
        with self._gpu_lock:
            index = self._gpu_shards.get(i)
            if index is None:
                device = i % gpu_count()
                if device not in self._gpu_resources:
                    self._gpu_resources[device] = faiss.StandardGpuResources()
                index = to_gpu(self.shards[i], self._kind, self.settings,
                               self._gpu_resources[device], device)
                self._gpu_shards[i] = index
            scores, pos = index.search(q, fetch)
        scores, pos = scores[0], pos[0]
        if self._masked[i]:
            offset = int(self._offsets()[i])
            live = (pos >= 0) & (self.ids[np.maximum(pos, 0) + offset] >= 0)
            scores, pos = scores[live], pos[live]
            if len(pos) < k and fetch < self.shards[i].ntotal:
                return None
        return scores[:k], pos[:k]

    def _search_rows(self, q: np.ndarray, k: int, rows: np.ndarray) -> Result:
        """Search only the global ``rows``: exactly when they are few (a graph search with
        a selector misses rows when most of the graph is filtered out), else by selector."""
        if len(rows) <= EXACT_SUBSET_MAX:
            scores, top = top_k_exact(self._reconstruct(rows), q[0], k)
            return scores, rows[top]
        offsets = self._offsets()

        def one(i: int) -> Result:
            local = rows[(rows >= offsets[i]) & (rows < offsets[i + 1])] - offsets[i]
            if len(local) == 0:
                return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
            scores, pos = self._search_shard(i, q, k, faiss.IDSelectorBatch(local))
            return scores, np.where(pos >= 0, pos + offsets[i], -1)

        return merge_top_k(self._map(one), k)

    def _reconstruct(self, rows: np.ndarray) -> np.ndarray:
        """The stored (for IVF-PQ: decoded) vectors of global ``rows``, in order."""
        offsets = self._offsets()
        shard_of = np.searchsorted(offsets, rows, side="right") - 1
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for i in np.unique(shard_of):
            mine = shard_of == i
            out[mine] = self.shards[i].reconstruct_batch(rows[mine] - offsets[i])
        return out

    # -- files -----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write into ``directory`` (the caller renames the directory into place)."""
        self._flush()
        for i, shard in enumerate(self.shards):
            faiss.write_index(shard, str(directory / shard_file(i)))
        if self._trained is not None:
            faiss.write_index(self._trained, str(directory / TRAINED_FILE))
        np.save(directory / "ids.npy", self.ids)

    @classmethod
    def load(cls, directory: Path, dim: int, settings: IndexSettings, kind: str) -> VectorIndex:
        """Raises RuntimeError (FAISS) or OSError/ValueError (NumPy) when a file is missing,
        truncated or does not match the others."""
        vi = cls(dim, settings, kind)
        while (directory / shard_file(len(vi.shards))).is_file():
            vi.shards.append(faiss.read_index(str(directory / shard_file(len(vi.shards)))))
        if (directory / TRAINED_FILE).is_file():
            vi._trained = faiss.read_index(str(directory / TRAINED_FILE))
        vi.ids = np.load(directory / "ids.npy")
        rows = sum(int(shard.ntotal) for shard in vi.shards)
        dims = {int(shard.d) for shard in vi.shards}
        if len(vi.ids) != rows or dims - {dim}:
            raise ValueError(f"{directory}: {len(vi.ids)} ids for {rows} vectors in "
                             f"{len(vi.shards)} shard files of {sorted(dims)} dimensions "
                             f"(expected {dim})")
        vi._make_selectors()
        if vi._kind == "ivfpq" and vi._trained is not None:
            built = ivfpq_layout(vi._trained)
            if built != (settings.pq_m, settings.pq_nbits, settings.opq):
                log.info("IVF-PQ index built as %s; settings ask for %s: it will be rebuilt",
                         built, (settings.pq_m, settings.pq_nbits, settings.opq))
                vi.kind = STALE
        return vi
