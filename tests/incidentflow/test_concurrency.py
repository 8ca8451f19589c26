"""The adaptive bound on calls to an outside system (incidentflow/concurrency.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from incidentflow.concurrency import AdaptiveLimit
from incidentflow.metrics import OUTSIDE_CONCURRENCY


class Calls:
    """Calls that wait until released, counting how many run at once."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.now = 0
        self.most = 0
        self.release = asyncio.Event()

    async def one(self, *, overloaded: bool = False, retry_after: float | None = None) -> None:
        async with self.limit.slot() as call:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                await self.release.wait()
                if overloaded:
                    call.overloaded(retry_after)
                    raise TimeoutError("no answer")
            finally:
                self.now -= 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_never_more_in_flight_than_the_bound() -> None:
    limit = AdaptiveLimit("test-bound", maximum=50, initial=4)
    calls = Calls(limit)
    tasks = [asyncio.create_task(calls.one()) for _ in range(20)]
    await settle()
    assert (calls.now, limit.in_flight) == (4, 4)
    calls.release.set()
    await asyncio.gather(*tasks)
    assert limit.in_flight == 0


async def test_successes_grow_the_bound_up_to_the_maximum() -> None:
    limit = AdaptiveLimit("test-grow", maximum=10, initial=2)
    for _ in range(30):
        async with limit.slot():
            pass
    assert limit.limit == 10
    assert OUTSIDE_CONCURRENCY.labels("test-grow")._value.get() == 10


async def test_overload_halves_it_and_growth_is_then_one_per_round() -> None:
    limit = AdaptiveLimit("test-halve", maximum=64, initial=16)
    calls = Calls(limit)
    calls.release.set()
    with pytest.raises(TimeoutError):
        await calls.one(overloaded=True)
    assert limit.limit == 8
    for _ in range(7):
        await calls.one()
    assert limit.limit == 8  # seven successes: less than a round of eight
    await calls.one()
    assert limit.limit == 9
    assert OUTSIDE_CONCURRENCY.labels("test-halve")._value.get() == 9


async def test_retry_after_holds_new_calls_back() -> None:
    limit = AdaptiveLimit("test-pause", maximum=8)
    calls = Calls(limit)
    calls.release.set()
    with pytest.raises(TimeoutError):
        await calls.one(overloaded=True, retry_after=0.3)
    started = time.monotonic()
    await calls.one()
    assert time.monotonic() - started >= 0.3


async def test_a_failed_call_frees_its_slot_without_growing() -> None:
    limit = AdaptiveLimit("test-fail", maximum=8, initial=1)
    with pytest.raises(ValueError):
        async with limit.slot():
            raise ValueError("refused")
    assert (limit.in_flight, limit.limit) == (0, 1)
    async with limit.slot():
        pass
    assert limit.limit == 2


async def test_calls_choked_together_halve_the_bound_once() -> None:
    limit = AdaptiveLimit("test-once", maximum=64, initial=16)
    calls = Calls(limit)
    choked = [asyncio.create_task(calls.one(overloaded=True)) for _ in range(16)]
    await settle()
    assert calls.now == 16
    calls.release.set()
    outcomes = await asyncio.gather(*choked, return_exceptions=True)
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes)
    assert limit.limit == 8  # not 1: one overload, one decrease
    with pytest.raises(TimeoutError):
        await calls.one(overloaded=True)  # a call started after that decrease: a new overload
    assert limit.limit == 4
