"""Synthetic libraries too large to hold as float32 (10^7 x 384 is 15 GB): vectors drawn in
seeded batches (so any batch can be drawn again), exact ground truth computed by streaming
the batches past the queries, and the resident memory of the process watched while it runs.

Used by ``benchmarks/bench_query.py`` for the IVF-PQ figures at 10^6-10^7 vectors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import percentiles
from benchmarks.synthetic import DIM, Sampler

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


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of each query's true 10 nearest rows among its first 10 found, averaged."""
    hits = sum(len(set(f[:10].tolist()) & set(t[:10].tolist())) for f, t in zip(found, truth,
                                                                                  strict=True))
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
