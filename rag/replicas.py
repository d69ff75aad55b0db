"""The model servers of ``llm.base_url`` (one or several replicas serving the same model):
which one a request tries first, and which ones are passed over after a failure.

Generation requests are spread round robin. A replica that failed (connection refused or reset, a
timeout, HTTP 5xx, a stream that broke) is passed over for ``llm.failover_cooldown_s``, then
tried again; when every replica is in that state they are all still tried, soonest back
first, so a request never fails only because of an old mark.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Replica:
    url: str  # OpenAI base URL, e.g. http://127.0.0.1:8000/v1
    down_until: float = 0.0  # monotonic time until which it is passed over

    @property
    def root(self) -> str:
        """Where vLLM serves /health and /tokenize (beside /v1, not under it)."""
        return self.url.removesuffix("/v1")


class Replicas:
    def __init__(self, urls: list[str], cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not urls:
            raise ValueError("no model server URL")
        self.items = [Replica(u) for u in urls]
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0

    def __len__(self) -> int:
        return len(self.items)

    def order(self, rotate: bool = True) -> list[Replica]:
        """Every replica, in the order one request tries them: round robin over those not
        passed over, then the passed-over ones, soonest back first. ``rotate=False`` (small
        requests: the model list, token counts) starts where the next one will, without
        taking its turn."""
        with self._lock:
            start = self._next
            if rotate:
                self._next = (self._next + 1) % len(self.items)
        rotated = self.items[start:] + self.items[:start]
        now = self._clock()
        up = [r for r in rotated if r.down_until <= now]
        down = sorted((r for r in rotated if r.down_until > now), key=lambda r: r.down_until)
        return up + down

    def failed(self, replica: Replica) -> None:
        replica.down_until = self._clock() + self.cooldown_s

    def succeeded(self, replica: Replica) -> None:
        replica.down_until = 0.0
