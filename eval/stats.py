"""Means and seeded 95% bootstrap intervals (percentile method, resampling questions with
replacement): the statistics every report of ``paperchat eval`` and the benchmarks use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
RESAMPLES = 1000


def bootstrap(items: Sequence[T], stat: Callable[[Sequence[T]], float | None],
              rng: np.random.Generator, resamples: int = RESAMPLES) -> list[float] | None:
    """[low, high] 95% interval of ``stat`` over resamples of ``items``; None when there
    are fewer than two items or the statistic is undefined on every resample."""
    if len(items) < 2:
        return None
    values = []
    for idx in rng.integers(0, len(items), size=(resamples, len(items))):
        v = stat([items[i] for i in idx])
        if v is not None:
            values.append(v)
    if not values:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None
