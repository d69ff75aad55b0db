"""FAISS vector index over chunk vectors: exact (flat) for small libraries, HNSW above a
threshold; inner product on normalised vectors (= cosine). On the GPU when faiss-gpu and
CUDA are present. Row positions map to chunk ids through an id array saved beside it."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from paperchat.settings import IndexSettings

log = logging.getLogger(__name__)


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def choose_kind(n: int, settings: IndexSettings) -> str:
    return "hnsw" if n >= settings.approx_threshold else "flat"


class VectorIndex:
    def __init__(self, dim: int, settings: IndexSettings, kind: str = "flat") -> None:
        self.dim = dim
        self.settings = settings
        self.kind = kind
        self.ids = np.zeros(0, dtype=np.int64)
        self.index = self._new_index()
        self._gpu_index: faiss.Index | None = None
        faiss.omp_set_num_threads(max(1, settings.threads))

    def _new_index(self) -> faiss.Index:
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.settings.hnsw_ef_construction
            index.hnsw.efSearch = self.settings.hnsw_ef_search
            return index
        return faiss.IndexFlatIP(self.dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self._gpu_index = None

    @property
    def max_id(self) -> int:
        return int(self.ids.max()) if len(self.ids) else 0

    def _searcher(self) -> faiss.Index:
        use = self.settings.use_gpu
        if self.kind != "flat" or use == "never" or (use == "auto" and gpu_count() == 0):
            return self.index
        if self._gpu_index is None:
            res = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(res, 0, self.index)
            self._gpu_res = res
        return self._gpu_index

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (chunk id, cosine) for one query vector; ``allowed`` restricts to chunk ids."""
        if len(self) == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        k = min(k, len(self))
        if allowed is not None:
            positions = np.flatnonzero(np.isin(self.ids, allowed)).astype(np.int64)
            if len(positions) == 0:
                return []
            sel = faiss.IDSelectorBatch(positions)
            params = (faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                sel=sel, efSearch=self.settings.hnsw_ef_search)
                if self.kind == "hnsw" else faiss.SearchParameters(sel=sel))  # type: ignore[call-arg]
            scores, pos = self.index.search(q, min(k, len(positions)), params=params)
        else:
            if self.kind == "hnsw":
                self.index.hnsw.efSearch = max(self.settings.hnsw_ef_search, k)  # type: ignore[attr-defined]
            scores, pos = self._searcher().search(q, k)
        return [(int(self.ids[p]), float(s)) for p, s in zip(pos[0], scores[0], strict=True)
                if p >= 0]

    def save(self, directory: Path) -> None:
        """Write into ``directory`` (the caller renames the directory into place)."""
        faiss.write_index(self.index, str(directory / "vectors.faiss"))
        np.save(directory / "ids.npy", self.ids)

    @classmethod
    def load(cls, directory: Path, dim: int, settings: IndexSettings, kind: str) -> VectorIndex:
        vi = cls(dim, settings, kind)
        vi.index = faiss.read_index(str(directory / "vectors.faiss"))
        vi.ids = np.load(directory / "ids.npy")
        if vi.kind == "hnsw":
            vi.index.hnsw.efSearch = settings.hnsw_ef_search  # type: ignore[attr-defined]
        return vi
