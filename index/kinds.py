"""The FAISS index kinds behind ``index.vectors.VectorIndex``: which one a library of n
chunks gets, how each is made (IVF-PQ trained on a sample), searched (per-call parameters,
so concurrent searches never change shared state) and copied to a GPU.

* ``flat``: exact inner product. Below ``index.approx_threshold`` chunks, and on a GPU up to
  GPU_FLAT_MAX (30 GB at 384-d).
* ``hnsw``: a graph over float32 vectors; up to ``index.ivfpq_threshold`` chunks. Its search
  breadth grows with the library (``ef_search``) to keep recall@10 at 0.95 or more.
* ``ivfpq``: inverted lists over ``ivf_nlist`` spherical k-means clusters (an HNSW graph
  over the centroids assigns vectors to lists), residuals compressed by product
  quantization to ``pq_m`` bytes (``pq_nbits`` 8) or ``pq_m / 2`` bytes (4-bit fast scan),
  optionally after an OPQ rotation. Scores are inner products with the decoded vectors
  (approximate cosines). A direct map (8 bytes a row) lets filtered searches decode rows.

GPU (faiss-gpu): flat and 8-bit IVF-PQ indexes are copied with ``index_cpu_to_gpu``. For
IVF-PQ the cloner options follow FAISS's GpuIndexIVFPQ: float16 lookup tables when
``pq_m * 256 > 16384`` (required there), no precomputed tables (inner product), the HNSW
coarse quantizer left on the CPU (``allowCpuCoarseQuantizer``), FAISS's classic GPU code
(``use_cuvs`` off: the limits above are the classic ones). HNSW has no GPU version.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np

from core.errors import ConfigError
from core.settings import IndexSettings

log = logging.getLogger(__name__)
_FAISS: Any = faiss  # its bundled type stubs lack the search parameter classes

KINDS = ("flat", "hnsw", "ivfpq")
GPU_FLAT_MAX = 20_000_000  # flat on the GPU up to this many vectors (30 GB at 384-d, fp32)
GPU_PQ_M = frozenset({1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 48, 56, 64, 96})  # FAISS GPU wiki
GPU_MAX_K = 1024  # results one GPU search may return (FAISS's classic limit)
IVFPQ_MIN_ROWS = 10_000  # fewer cannot train 256-centroid codebooks (39 points each)
MIN_POINTS_PER_LIST = 32  # nlist is capped at the training sample / this
QUANTIZER_EF = 128  # HNSW search breadth over the centroids (at least 2 x nprobe)
OPQ_ITERATIONS = 4  # OPQ rotation refinements (each trains the PQ again)
EF_BASE_N = 100_000  # hnsw_ef_search holds up to this many vectors, then grows:
EF_GROWTH = 0.55  # 128 at 1e5 -> 455 at 1e6 (benchmarks/results/query.json, fitted vectors:
# efSearch 128 at 1e5: recall@10 0.968, 0.9 ms; 384 / 448 / 512 at 1e6: 0.957 / 0.966 /
# 0.971 at 4.3 / 4.0 / 4.6 ms; 448 keeps a margin on both the recall and the 5 ms target)


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def build_threads(settings: IndexSettings | None = None) -> int:
    """OpenMP threads for building: ``index.build_threads``, or every usable core."""
    if settings is not None and settings.build_threads > 0:
        return settings.build_threads
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


@contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """FAISS's OpenMP thread count for one block in this thread (restored after)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def gpu_unsupported(kind: str, settings: IndexSettings) -> str | None:
    """Why FAISS cannot search a ``kind`` index with these settings on a GPU (None: it can)."""
    if kind == "hnsw":
        return "FAISS has no GPU HNSW"
    if kind == "ivfpq" and settings.pq_nbits != 8:
        return "FAISS's GPU IVF-PQ needs index.pq_nbits = 8"
    if kind == "ivfpq" and settings.pq_m not in GPU_PQ_M:
        return f"FAISS's GPU IVF-PQ takes pq_m in {sorted(GPU_PQ_M)}"
    return None


def searches_on_gpu(kind: str, settings: IndexSettings, gpus: int) -> bool:
    """Whether unfiltered searches of a ``kind`` index run on the GPU. ``use_gpu='always'``
    without a GPU is a configuration error."""
    if settings.use_gpu == "never":
        return False
    if gpus == 0:
        if settings.use_gpu == "always":
            raise ConfigError("index.use_gpu is 'always', but FAISS sees no GPU.",
                              "Install faiss-gpu-cu12 on a CUDA machine, or set "
                              "index.use_gpu to 'auto'.")
        return False
    return gpu_unsupported(kind, settings) is None


def choose_kind(n: int, settings: IndexSettings, gpus: int | None = None) -> str:
    """The index kind for ``n`` chunks: ``index.kind``, or by size when it is 'auto' (see the
    module docstring). IVF-PQ needs IVFPQ_MIN_ROWS to train: below, the index is flat.
    ``use_gpu='always'`` with a kind the GPU cannot search is a configuration error."""
    gpus = gpu_count() if gpus is None else gpus
    on_gpu = searches_on_gpu("flat", settings, gpus)
    kind = settings.kind
    if kind == "auto":
        if on_gpu and (n <= GPU_FLAT_MAX or gpu_unsupported("ivfpq", settings) is not None):
            kind = "flat" if n <= GPU_FLAT_MAX else "ivfpq"
        elif on_gpu or n >= max(settings.ivfpq_threshold, IVFPQ_MIN_ROWS):
            kind = "ivfpq"
        else:
            kind = "hnsw" if n >= settings.approx_threshold else "flat"
    reason = gpu_unsupported(kind, settings)
    if on_gpu and settings.use_gpu == "always" and reason:
        raise ConfigError(f"index.use_gpu is 'always', but {reason}.",
                          "Set index.kind to 'auto', 'flat' or 'ivfpq' (8-bit), or "
                          "index.use_gpu to 'auto'.")
    return "flat" if kind == "ivfpq" and n < IVFPQ_MIN_ROWS else kind


def ef_search(n: int, settings: IndexSettings, k: int) -> int:
    """HNSW search breadth for ``n`` vectors and ``k`` results (see EF_GROWTH)."""
    scale = max(1.0, n / EF_BASE_N) ** EF_GROWTH
    return max(k, round(settings.hnsw_ef_search * scale))


def new_faiss_index(kind: str, dim: int, settings: IndexSettings) -> Any:
    """An empty flat or HNSW index with the settings' parameters (IVF-PQ is trained first:
    ``train_ivfpq``)."""
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = settings.hnsw_ef_search
        return index
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    raise ConfigError(f"Unknown vector index kind {kind!r}.", "Run `paperchat reindex`.")


def check_pq(dim: int, settings: IndexSettings) -> None:
    if settings.pq_m <= 0 or dim % settings.pq_m:
        raise ConfigError(f"index.pq_m = {settings.pq_m} does not divide the vector size {dim}.",
                          "Pick a divisor of it, e.g. 48 or 96 for 384-d vectors.")


def coarse_centroids(sample: np.ndarray, nlist: int) -> np.ndarray:
    """Spherical k-means centroids of ``sample`` (10 iterations: enough for inverted lists)."""
    km = faiss.Kmeans(sample.shape[1], nlist, niter=10, spherical=True, seed=1234,
                      min_points_per_centroid=MIN_POINTS_PER_LIST)
    km.train(sample)
    return np.asarray(km.centroids)


def train_ivfpq(sample: np.ndarray, settings: IndexSettings,
                centroids: np.ndarray | None = None) -> Any:
    """An empty IVF-PQ index trained on ``sample`` (unit vectors, float32); ``centroids``
    (of another IVF-PQ index without OPQ) skip the coarse k-means."""
    n, dim = sample.shape
    check_pq(dim, settings)
    transform = None
    if settings.opq:
        transform = faiss.OPQMatrix(dim, settings.pq_m)
        transform.niter = OPQ_ITERATIONS
        transform.train(sample)
        sample = transform.apply(sample)
    if centroids is None or transform is not None:
        centroids = coarse_centroids(sample, max(1, min(settings.ivf_nlist,
                                                        n // MIN_POINTS_PER_LIST)))
    nlist = len(centroids)
    quantizer = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    quantizer.hnsw.efSearch = max(QUANTIZER_EF, 2 * settings.ivf_nprobe)
    quantizer.add(centroids)
    ivf: Any
    if settings.pq_nbits == 4:
        ivf = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, settings.pq_m, 4,
                                       faiss.METRIC_INNER_PRODUCT)
    else:
        ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, settings.pq_m, 8,
                               faiss.METRIC_INNER_PRODUCT)
    ivf.pq.cp.max_points_per_centroid = 64  # 16,384 residuals per codebook at most,
    ivf.pq.cp.min_points_per_centroid = 8  # and no warning on stderr below 9,984
    ivf.train(sample)  # the quantizer already holds nlist centroids: trains the codebooks
    ivf.set_direct_map_type(_FAISS.DirectMap.Array)
    index = faiss.IndexPreTransform(transform, ivf) if transform is not None else ivf
    return faiss.clone_index(index)  # one object that owns its parts


def ivfpq_layout(index: Any) -> tuple[int, int, bool]:
    """(pq_m, pq_nbits, opq) of a trained IVF-PQ index."""
    ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
    return int(ivf.pq.M), int(ivf.pq.nbits), is_pretransform(index)


def is_pretransform(index: Any) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexPreTransform)


def nlist_of(index: Any) -> int:
    return int(faiss.extract_index_ivf(index).nlist)


def centroids_of(index: Any) -> np.ndarray:
    """The coarse centroids of an IVF-PQ index (in its rotated space when it has OPQ)."""
    quantizer = faiss.extract_index_ivf(index).quantizer
    return np.asarray(quantizer.reconstruct_n(0, quantizer.ntotal))


def search_params(kind: str, index: Any, settings: IndexSettings, n: int, k: int,
                  sel: Any = None) -> Any:
    """Per-call search parameters (selector, search breadth) for one shard; None for an
    unfiltered flat search."""
    if kind == "hnsw":
        return _FAISS.SearchParametersHNSW(sel=sel, efSearch=ef_search(n, settings, k))
    if kind == "ivfpq":
        nprobe = min(settings.ivf_nprobe, nlist_of(index))
        quantizer = _FAISS.SearchParametersHNSW(efSearch=max(QUANTIZER_EF, 2 * nprobe))
        ivf = _FAISS.SearchParametersIVF(sel=sel, nprobe=nprobe, quantizer_params=quantizer)
        if is_pretransform(index):
            return _FAISS.SearchParametersPreTransform(index_params=ivf)
        return ivf
    return _FAISS.SearchParameters(sel=sel) if sel is not None else None


def gpu_cloner_options(kind: str, settings: IndexSettings) -> Any:
    options = faiss.GpuClonerOptions()
    if hasattr(options, "use_cuvs"):
        options.use_cuvs = False
    if kind == "ivfpq":
        options.useFloat16 = settings.pq_m * 256 > 16384  # float16 lookup tables
        options.usePrecomputed = False
        options.allowCpuCoarseQuantizer = True  # the HNSW quantizer stays on the CPU
    return options


def to_gpu(index: Any, kind: str, settings: IndexSettings, resources: Any, device: int) -> Any:
    """A copy of ``index`` on GPU ``device`` (call under the GPU lock)."""
    gpu_index = faiss.index_cpu_to_gpu(resources, device, index,
                                       gpu_cloner_options(kind, settings))
    if kind == "ivfpq":
        nprobe = min(settings.ivf_nprobe, nlist_of(index), GPU_MAX_K)
        _FAISS.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
    return gpu_index
