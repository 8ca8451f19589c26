"""Publishes the outbox: every accepted incident's event reaches RabbitMQ, confirmed, eventually.

The request only commits; this loop publishes. When the broker is down it keeps retrying,
and ingest keeps accepting (202) meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from faststream.rabbit import RabbitBroker

from contracts.topology import EVENTS
from services.ingest import store

log = logging.getLogger("incidentflow.ingest.relay")


class OutboxRelay:
    def __init__(
        self, pool: asyncpg.Pool, broker: RabbitBroker, interval: float, batch_size: int
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._interval = interval
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many events went out."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await store.pending_outbox(conn, self._batch_size)
            if not rows:
                return 0
            # Concurrent publishes, confirms awaited together: one round trip per batch.
            await asyncio.gather(
                *(
                    self._broker.publish(
                        row["payload"],
                        exchange=EVENTS,
                        routing_key=row["routing_key"],
                        persist=True,
                        mandatory=True,
                        message_id=str(row["event_id"]),
                        message_type=row["routing_key"].rsplit(".", 1)[0],
                        content_type="application/json",
                        timeout=10,
                    )
                    for row in rows
                )
            )
            await store.mark_published(conn, [row["id"] for row in rows])
        return len(rows)

    async def _run(self) -> None:
        while True:
            try:
                while await self.publish_pending() == self._batch_size:
                    pass
            except Exception as exc:  # broker or database away: keep the rows, try again
                log.warning("outbox relay failed, will retry", extra={"error": repr(exc)})
                await asyncio.sleep(self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
