"""A background loop outlives any failing round, a stray CancelledError included, and still
stops when its own task is cancelled."""

from __future__ import annotations

import asyncio
import logging

import pytest

from incidentflow.loops import survive_round

log = logging.getLogger("test.loops")


async def test_a_round_failing_with_a_stray_cancellation_does_not_end_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [asyncio.CancelledError(), RuntimeError("database away")]
    rounds: list[int] = []
    third_round = asyncio.Event()

    async def loop() -> None:
        while True:
            with survive_round(log, "test loop"):
                rounds.append(len(rounds))
                if failures:
                    raise failures.pop(0)  # a confirm cancelled by a dropped connection
                third_round.set()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await asyncio.wait_for(third_round.wait(), timeout=5)
    assert len(rounds) >= 3 and not task.done()
    assert caplog.text.count("test loop failed") == 2
    task.cancel()  # the owner's stop
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_owners_cancellation_inside_a_round_ends_the_loop() -> None:
    started = asyncio.Event()

    async def loop() -> None:
        while True:
            with survive_round(log, "test loop"):
                started.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(loop())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
