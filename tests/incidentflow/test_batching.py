"""Group commit: concurrent submissions share one flush; a bad item fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from incidentflow.batching import Batcher


async def test_concurrent_submissions_share_a_flush_and_get_their_own_results() -> None:
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        await asyncio.sleep(0.01)  # a round trip, during which the next batch collects
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert sorted(i for batch in flushed for i in batch) == list(range(50))
    assert len(flushed) < 5  # not one round trip per item


async def test_an_idle_batcher_flushes_a_lone_item_at_once() -> None:
    batcher: Batcher[str, str] = Batcher(lambda items: _upper(items))
    assert await asyncio.wait_for(batcher.submit("a"), timeout=0.5) == "A"


async def _upper(items: Sequence[str]) -> list[str]:
    return [i.upper() for i in items]


async def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_item_fails() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 violates a constraint")
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush)
    outcomes = await asyncio.gather(
        *(batcher.submit(i) for i in (11, 12, 13, 14)), return_exceptions=True
    )
    assert outcomes[:2] == [11, 12] and outcomes[3] == 14
    assert isinstance(outcomes[2], ValueError)


async def test_batches_respect_the_size_limit() -> None:
    sizes: list[int] = []

    async def flush(items: Sequence[int]) -> list[None]:
        sizes.append(len(items))
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush, max_size=7)
    await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert max(sizes) <= 7 and sum(sizes) == 20


async def test_a_cancelled_waiter_leaves_its_item_in_the_batch() -> None:
    written: list[int] = []
    release = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[None]:
        await release.wait()
        written.extend(items)
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush)
    waiter = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await batcher.submit(2)
    assert written == [1, 2]


async def test_submit_all_writes_items_together_and_fails_once_every_item_has_its_outcome() -> None:
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        if 13 in items:
            raise ValueError("13 violates a constraint")
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    assert await batcher.submit_all([1, 2, 3]) == [10, 20, 30]
    assert flushed == [[1, 2, 3]]
    with pytest.raises(ValueError, match="13"):
        await batcher.submit_all([11, 13, 14])
    # Raised only after the batch was retried item by item: the good items are written.
    assert flushed[1:] == [[11, 13, 14], [11], [13], [14]]
