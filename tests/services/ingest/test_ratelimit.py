"""The moving window: allows the limit, says when a slot frees, forgets idle keys."""

from __future__ import annotations

import pytest

from services.ingest.ratelimit import MovingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_then_retry_after_then_free_again() -> None:
    clock = Clock()
    window = MovingWindow("3/minute", clock)
    assert [window.hit("a") for _ in range(3)] == [None, None, None]
    clock.now += 20
    assert window.hit("a") == 40  # the first hit leaves the window 40 s from now
    assert window.hit("b") is None  # keys are independent
    clock.now += 40
    assert window.hit("a") is None


def test_idle_keys_are_dropped_once_per_window() -> None:
    clock = Clock()
    window = MovingWindow("5/second", clock)
    for n in range(5000):
        window.hit(f"customer-{n}")
    assert len(window) == 5000
    clock.now += 1.5
    window.hit("someone")
    assert len(window) == 1


def test_notation_is_limits() -> None:
    assert MovingWindow("10 per hour").seconds == 3600
    with pytest.raises(ValueError):
        MovingWindow("lots")
