"""How many calls to one outside system (Gemini, a ticket API) may be in flight at once.

A fixed bound is wrong both ways: too low and a slow system holds the pipeline back (300 ms
answers at 8 in flight cap a step at about 26 calls a second), too high and an overloaded one
gets buried. ``AdaptiveLimit`` does what TCP does. From ``initial`` the bound grows by one with
each success (doubling each round) until the first sign of overload, then by one per full
round of successes (additive increase), up to ``maximum``. An answer that says "overloaded"
(429, 503, a timeout) halves it (multiplicative decrease) and, when the system said how long,
holds new calls back for its Retry-After. The current bound is a metric
(``incidentflow_outside_concurrency``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from incidentflow.metrics import OUTSIDE_CONCURRENCY


class AdaptiveLimit:
    def __init__(self, system: str, maximum: int, initial: int | None = None) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.system = system
        self.maximum = maximum
        self.limit = min(initial or maximum, maximum)
        self.in_flight = 0
        self._slow_start = True  # until the first overload
        self._successes = 0
        self._resume_at = 0.0
        self._decreased_at = float("-inf")
        self._released = asyncio.Event()
        OUTSIDE_CONCURRENCY.labels(system).set(self.limit)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Call]:
        """One call's turn. The caller reports an overloaded answer with
        ``call.overloaded()``; a call that raises anything else says nothing more (a refusal is
        an answer, not a load)."""
        # One event loop, no thread: the counters need no lock, and nothing here awaits
        # between a check and its update. A release wakes every waiter to look again.
        while True:
            now = time.monotonic()
            if self.in_flight < self.limit and now >= self._resume_at:
                break
            self._released.clear()
            # Paused: wake at the end of the pause at the latest (a release may come first).
            pause = self._resume_at - now if now < self._resume_at else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), pause)
        self.in_flight += 1
        call = Call(self, time.monotonic())
        try:
            yield call
            if not call.was_overloaded:
                self._succeeded()
        finally:
            self.in_flight -= 1
            self._released.set()

    def _overloaded(self, call: Call, retry_after: float | None) -> None:
        # Once per overload, not once per call: the calls in flight when the system choked all
        # say so, and halving for each would take the bound to 1. A call that started before
        # the last decrease was already answered by it.
        if call.started >= self._decreased_at:
            self.limit = max(1, self.limit // 2)
            self._decreased_at = time.monotonic()
            self._slow_start = False
            self._successes = 0
            OUTSIDE_CONCURRENCY.labels(self.system).set(self.limit)
        if retry_after:
            self._resume_at = max(self._resume_at, time.monotonic() + retry_after)

    def _succeeded(self) -> None:
        self._successes += 1
        if self.limit >= self.maximum:
            return
        if self._slow_start or self._successes >= self.limit:
            self.limit += 1
            self._successes = 0
            OUTSIDE_CONCURRENCY.labels(self.system).set(self.limit)


@dataclass
class Call:
    """One call holding a slot of an ``AdaptiveLimit``."""

    limit: AdaptiveLimit
    started: float
    was_overloaded: bool = False

    def overloaded(self, retry_after: float | None = None) -> None:
        """The system answered 429/503 or did not answer in time: halve the bound (once for
        all the calls it choked at once), and hold new calls back for ``retry_after`` seconds
        when it said so."""
        self.was_overloaded = True
        self.limit._overloaded(self, retry_after)
