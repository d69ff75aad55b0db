"""Retries with exponential backoff, in one place (arXiv API calls and PDF downloads)."""

from __future__ import annotations

from collections.abc import Callable, Iterator


def attempts(retries: int, backoff_s: float, sleep: Callable[[float], None]) -> Iterator[int]:
    """Attempt numbers 0..retries; before attempt n > 0 sleeps ``backoff_s * 2**(n-1)``.

    Use as ``for attempt in attempts(...)``: ``continue`` after a failure worth retrying,
    ``return`` (or raise) when done; the loop ends when the retries are spent."""
    for attempt in range(1 + max(0, retries)):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        yield attempt
