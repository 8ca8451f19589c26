"""Moving-window rate limits per caller and per customer, in this process's memory.

limits' MemoryStorage sweeps every key from a timer (async: on every hit), which cost 6.7% of
ingest's CPU with 5,000 customers; this keeps each key's recent hits and drops idle keys once
per window. Only limits' notation parser is used.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from limits import parse


class MovingWindow:
    """At most ``amount`` hits per key in any ``seconds``-long window."""

    def __init__(self, notation: str, clock: Callable[[], float] = time.monotonic) -> None:
        item = parse(notation)
        self.amount = item.amount
        self.seconds = float(item.get_expiry())
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = clock() + self.seconds

    def hit(self, key: str) -> int | None:
        """Count a hit; None when allowed, else whole seconds until a slot frees."""
        now = self._clock()
        if (wait := self._wait(key, now)) is not None:
            return wait
        self._hits.setdefault(key, deque()).append(now)
        return None

    def retry_after(self, key: str) -> int | None:
        """None when ``key`` has room for a hit, else whole seconds until it has; counts
        nothing (for limits on failures, which are counted only once they happen)."""
        return self._wait(key, self._clock())

    def _wait(self, key: str, now: float) -> int | None:
        if now >= self._next_sweep:
            self._sweep(now)
        hits = self._hits.get(key)
        if not hits:
            return None
        cutoff = now - self.seconds
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self.amount:
            return max(1, math.ceil(hits[0] + self.seconds - now))
        return None

    def _sweep(self, now: float) -> None:
        cutoff = now - self.seconds
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= cutoff]:
            del self._hits[key]
        self._next_sweep = now + self.seconds

    def __len__(self) -> int:
        return len(self._hits)
