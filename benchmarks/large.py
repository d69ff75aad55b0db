"""Synthetic libraries too large to hold as float32 (10^7 x 384 is 15 GB): vectors drawn in
seeded batches (so any batch can be drawn again), exact ground truth computed by streaming
the batches past the queries, and the resident memory of the process watched while it runs.

Used by ``benchmarks/bench_query.py`` for the IVF-PQ figures at 10^6-10^7 vectors.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.common import Stopwatch, percentiles
from benchmarks.synthetic import DIM, Sampler
from core.settings import IndexSettings
from index.kinds import centroids_of, ivfpq_layout, nlist_of, omp_threads, search_params
from index.vectors import VectorIndex, merge_top_k

BATCH = 1 << 16  # vectors drawn per batch (96 MiB at 384-d)


def draw(sampler: Sampler, seed: int, start: int, n: int) -> np.ndarray:
    """Rows ``start .. start + n`` of the stream ``seed`` (``start`` a multiple of BATCH)."""
    out = np.empty((n, DIM), dtype=np.float32)
    for i, b0 in enumerate(range(start, start + n, BATCH)):
        size = min(BATCH, start + n - b0)
        rng = np.random.default_rng([seed, b0 // BATCH])
        out[i * BATCH:i * BATCH + size] = sampler(size, rng)
    return out


def stream(sampler: Sampler, seed: int, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, vectors) batches of the stream ``seed``, ``n`` rows in all."""
    for start in range(0, n, BATCH):
        yield start, draw(sampler, seed, start, min(BATCH, n - start))


class TopK:
    """Exact top-k inner products of a few queries over vectors seen batch by batch."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.rows = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, start: int, vectors: np.ndarray) -> None:
        s = self.queries @ vectors.T  # (queries, batch)
        k = min(self.k, s.shape[1])
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        scores = np.concatenate([self.scores, np.take_along_axis(s, part, axis=1)], axis=1)
        rows = np.concatenate([self.rows, part + start], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :self.k]
        self.scores = np.take_along_axis(scores, best, axis=1)
        self.rows = np.take_along_axis(rows, best, axis=1)


def recall_at_10(found: Sequence[Sequence[int]] | np.ndarray, truth: np.ndarray) -> float:
    """Share of each query's true 10 nearest rows among its first 10 found, averaged."""
    hits = sum(len({int(r) for r in f[:10]} & {int(r) for r in t[:10]})
               for f, t in zip(found, truth, strict=True))
    return round(hits / (10 * len(truth)), 4)


class PeakRss:
    """The process's peak resident memory (MiB) while the block runs, sampled every 50 ms
    from /proc (ru_maxrss would also count what ran before)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def now() -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = round(max(self.peak, self.now()), 1)


def timed_searches(search: Any, queries: np.ndarray) -> dict[str, Any]:
    """Wall and CPU (the process's, all threads) milliseconds per single-query call of
    ``search(q)``, after one warm-up. On a loaded machine the CPU time is the figure that
    does not depend on what else runs; the wall time is what a user waits."""
    search(queries[0])
    wall: list[float] = []
    cpu: list[float] = []
    for q in queries:
        w, c = time.perf_counter(), time.process_time()
        search(q)
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return {"wall": percentiles(wall), "cpu": percentiles(cpu)}


# ------------------------------------------------------------------ IVF-PQ at 10^7

NPROBES = (16, 32, 64, 128, 256)
RERANKS = (1, 2, 4, 10)  # candidates per result re-scored with the exact vectors
QUERY_SEED = 7
BUILD_SEED = 1


class ExactRows:
    """The exact vectors of the build stream, appended as float16 to a file while it streams
    (plain writes: a written memory map would count every page in this process's memory)
    and read back by chunk id (row + 1) through a read-only memory map: the re-ranking
    source of the benchmark (the library's is its SQLite file; bench_query times that)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Any = open(path, "wb")  # noqa: SIM115 - closed by finish()
        self.rows: np.ndarray | None = None

    def write(self, start: int, x: np.ndarray) -> None:
        self.file.write(x.astype(np.float16).tobytes())

    def finish(self) -> None:
        self.file.close()
        self.rows = np.memmap(self.path, dtype=np.float16, mode="r").reshape(-1, DIM)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        assert self.rows is not None
        return np.asarray(self.rows[ids - 1], dtype=np.float32)


def build_ivfpq(n: int, sampler: Sampler, configs: dict[str, IndexSettings], truth: TopK,
                exact: ExactRows | None) -> tuple[dict[str, VectorIndex], dict[str, Any]]:
    """IVF-PQ VectorIndexes over ``n`` streamed vectors (chunk id = row + 1), one per
    config, trained on the stream's first ``train_sample`` rows (the coarse centroids of
    the first shared by the others); ``truth`` and ``exact`` see every batch on the way."""
    build: dict[str, Any] = {}
    indexes: dict[str, VectorIndex] = {}
    centroids = None
    base = PeakRss.now()
    with PeakRss() as peak:
        for name, settings in configs.items():
            index = VectorIndex(DIM, settings, "ivfpq")
            with Stopwatch() as train:
                index.train(draw(sampler, BUILD_SEED, 0, min(n, settings.train_sample)),
                            centroids)
            centroids = centroids_of(index._trained) if centroids is None else centroids
            indexes[name] = index
            build[name] = {"train_s": round(train.seconds, 1), "add_s": 0.0}
        for start, x in stream(sampler, BUILD_SEED, n):
            for name, index in indexes.items():
                with Stopwatch() as sw:
                    index.add(np.arange(start + 1, start + 1 + len(x)), x)
                build[name]["add_s"] += sw.seconds
            truth.update(start, x)
            if exact is not None:
                exact.write(start, x)
    if exact is not None:
        exact.finish()
    for fig in build.values():
        fig["add_s"] = round(fig["add_s"], 1)
        fig["build_s"] = round(fig["train_s"] + fig["add_s"], 1)
    build["peak_rss_mib"] = peak.peak
    build["indexes_rss_mib"] = round(PeakRss.now() - base, 1)
    return indexes, build


def coverage(found: list[list[int]], truth: np.ndarray, r: int) -> float:
    """recall@10 after re-scoring each query's first ``r`` rows found with exact vectors:
    the true 10 among them then rank first, so it is the share of the true 10 among them."""
    hits = sum(len(set(f[:r]) & set(t[:10].tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / (10 * len(truth)), 4)


def sequential_search(index: VectorIndex, q: np.ndarray, k: int) -> Any:
    """The shards searched one after the other in this thread, then merged."""
    offsets = np.cumsum([0] + [int(s.ntotal) for s in index.shards])
    parts = []
    for i, shard in enumerate(index.shards):
        params = search_params("ivfpq", shard, index.settings, int(shard.ntotal), k)
        scores, pos = shard.search(q.reshape(1, -1), k, params=params)
        parts.append((scores[0], np.where(pos[0] >= 0, pos[0] + offsets[i], -1)))
    return merge_top_k(parts, k)


def shard_merges(index: VectorIndex, queries: np.ndarray, k: int) -> dict[str, Any]:
    """Our parallel merge against the shards searched in turn and FAISS's IndexShards
    (threaded), at the index's nprobe: latency, and whether IndexShards returns our rows."""
    out: dict[str, Any] = {"shards": len(index.shards)}
    with omp_threads(index.settings.threads):
        out["sequential"] = timed_searches(lambda q: sequential_search(index, q, k), queries)
        shards = faiss.IndexShards(DIM, True)
        shards.successive_ids = True
        for shard in index.shards:
            faiss.extract_index_ivf(shard).nprobe = index.settings.ivf_nprobe
            shards.add_shard(shard)
        out["faiss_index_shards"] = timed_searches(
            lambda q: shards.search(q.reshape(1, -1), k), queries)
        same = [set(shards.search(q.reshape(1, -1), k)[1][0].tolist())
                == {c - 1 for c, _ in index.search(q, k)} for q in queries]
    out["parallel_merge"] = timed_searches(lambda q: index.search(q, k), queries)
    out["same_rows"] = round(float(np.mean(same)), 3)
    return out


def describe(index: VectorIndex, work: Path) -> dict[str, Any]:
    """Layout, file size and save time of a built IVF-PQ index."""
    m, nbits, opq = ivfpq_layout(index.shards[0])
    out: dict[str, Any] = {"nlist": nlist_of(index.shards[0]), "pq_m": m, "pq_nbits": nbits,
                           "opq": opq, "shards": len(index.shards), "on_gpu": index._on_gpu,
                           "train_sample": index.settings.train_sample}
    folder = Path(tempfile.mkdtemp(dir=work, prefix="ivfpq-"))
    with Stopwatch() as save:
        index.save(folder)
    out["file_mib"] = round(sum(f.stat().st_size for f in folder.iterdir()) / 2**20, 1)
    out["save_s"] = round(save.seconds, 2)
    shutil.rmtree(folder)
    return out


def nprobe_sweep(index: VectorIndex, queries: np.ndarray, truth: TopK, k: int,
                 n_latency: int, exact: ExactRows | None) -> list[dict[str, Any]]:
    """Per nprobe: recall@10 of the PQ ranking and after exact re-ranking of r x k
    candidates (the share of the true 10 among them: re-scored exactly, they come first),
    and single-query latency with PQ scores only and with re-ranking (r = ivfpq_rerank)."""
    settings = index.settings
    rows = []
    for nprobe in NPROBES:
        index.settings = settings.model_copy(update={"ivf_nprobe": nprobe})
        index.exact = None
        found = [[c - 1 for c, _ in index.search(q, max(RERANKS) * k)] for q in queries]
        row: dict[str, Any] = {"nprobe": nprobe, "recall_at_10": recall_at_10(found, truth.rows),
                               "pq_only": timed_searches(lambda q: index.search(q, k),
                                                         queries[:n_latency])}
        for r in RERANKS:
            row[f"recall_at_10_rerank_{r}"] = coverage(found, truth.rows, r * k)
        if exact is not None:
            index.exact = exact
            row["reranked"] = timed_searches(lambda q: index.search(q, k), queries[:n_latency])
        rows.append(row)
    index.settings, index.exact = settings, exact
    return rows


def ivfpq_at_scale(n: int, sampler: Sampler, configs: dict[str, IndexSettings],
                   n_queries: int, n_latency: int, k: int,
                   work: Path) -> tuple[dict[str, VectorIndex], dict[str, Any]]:
    """Build time, memory, recall@10 against exact search and single-query latency over a
    sweep of nprobe, for IVF-PQ over ``n`` fitted vectors (never all in memory), for each
    of ``configs``; the first is the default (its shards are also compared with IndexShards)."""
    queries = sampler(n_queries, np.random.default_rng(QUERY_SEED))
    truth = TopK(queries, 10)
    exact = ExactRows(work / "exact-rows.f16")
    indexes, build = build_ivfpq(n, sampler, configs, truth, exact)
    out: dict[str, Any] = {"n": n, "data": sampler.kind, "k": k, "queries": n_queries,
                           "build": build, "configs": {}}
    for name, index in indexes.items():
        out["configs"][name] = {"index": describe(index, work), "sweep": nprobe_sweep(
            index, queries, truth, k, n_latency, exact)}
    first = next(iter(indexes.values()))
    if len(first.shards) > 1:
        first.exact = None
        out["shard_merge"] = shard_merges(first, queries[:n_latency], k)
        first.exact = exact
    return indexes, out
