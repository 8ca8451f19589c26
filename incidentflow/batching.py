"""Group commit: writes that concurrent handlers submit go to Postgres together, in one statement.

Each round trip to another process costs this project's machines about 100 µs of CPU on each
side (docs/performance.md), far more than the SQL itself. A handler therefore hands its write
to a Batcher and awaits the outcome: while one batch is in flight the next one collects, so an
idle service writes at once (no timer, no added latency) and a busy one writes many messages per
round trip. A batch that fails is split and retried item by item, so one bad item fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("incidentflow.batching")


class Batcher(Generic[T, R]):
    """``await submit(item)`` returns ``flush([…, item, …])``'s result for that item."""

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_size: int = 200
    ) -> None:
        self._flush = flush
        self._max_size = max_size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    @classmethod
    def pooled(
        cls,
        pool: Callable[[], asyncpg.Pool],
        work: Callable[[asyncpg.Connection, Sequence[T]], Awaitable[Sequence[R]]],
        max_size: int = 200,
    ) -> Batcher[T, R]:
        """A batcher whose batches run as ``work(conn, items)`` on a connection of ``pool``
        (a getter: services open their pool after building their handlers)."""

        async def flush(items: Sequence[T]) -> Sequence[R]:
            async with pool().acquire() as conn:
                return await work(conn, items)

        return cls(flush, max_size)

    @classmethod
    def pooled_writes(
        cls,
        pool: Callable[[], asyncpg.Pool],
        write: Callable[[asyncpg.Connection, Sequence[T]], Awaitable[None]],
        max_size: int = 200,
    ) -> Batcher[T, None]:
        """A pooled batcher for writes that answer nothing but success or failure."""

        async def work(conn: asyncpg.Connection, items: Sequence[T]) -> list[None]:
            await write(conn, items)
            return [None] * len(items)

        return Batcher.pooled(pool, work, max_size)

    async def submit(self, item: T) -> R:
        # Shielded: a cancelled caller leaves its item in the batch (it may already be
        # written); only its wait ends.
        return await asyncio.shield(self._enqueue([item])[0])

    async def submit_all(self, items: Sequence[T]) -> list[R]:
        """``submit`` for several items at once (in the same batch unless it fills up);
        raises the first item's failure once every item has its outcome."""
        outcomes = await asyncio.shield(
            asyncio.gather(*self._enqueue(items), return_exceptions=True)
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]  # no exception among them

    def _enqueue(self, items: Sequence[T]) -> list[asyncio.Future[R]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return futures

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            # One turn of the loop first: handlers woken by the same read of the socket join.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self._max_size]
                del self._pending[: self._max_size]
                await self._run(batch)
        except BaseException as exc:
            # Cancelled (shutdown): nobody may wait for an outcome that will not come.
            for _, future in [*batch, *self._pending]:
                _settle(future, exc=exc)
            self._pending.clear()
            raise

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            log.warning(
                "batch write failed, retrying its items one by one",
                extra={"size": len(batch), "error": repr(exc)},
            )
            for one in batch:
                await self._run([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(
    future: asyncio.Future[R], result: R | None = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
