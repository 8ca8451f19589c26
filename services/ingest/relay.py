"""Publishes the outbox: every accepted incident's event reaches RabbitMQ, confirmed, eventually.

The request only commits; this loop publishes. When the broker is down it keeps retrying,
and ingest keeps accepting (202) meanwhile. When the broker refuses events (a nack: a full
queue), the relay says so, and ingest stops accepting until an event goes through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from aiormq.exceptions import DeliveryError, PublishError
from faststream.rabbit import RabbitBroker
from pamqp.commands import Basic

from incidentflow.batched_events import Part, in_messages
from incidentflow.loops import survive_round
from incidentflow.messaging import PUBLISH_TIMEOUT_SECONDS, publish_parts
from services.ingest import store

log = logging.getLogger("incidentflow.ingest.relay")


def is_refusal(failure: BaseException) -> bool:
    """A broker nack (a queue at x-max-length with reject-publish), not an outage or a return."""
    return (
        isinstance(failure, DeliveryError)
        and not isinstance(failure, PublishError)
        and isinstance(failure.frame, Basic.Nack)
    )


# Events per message: what a relay round finds pending goes in messages of at most this many.
EVENTS_PER_MESSAGE = 100


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: RabbitBroker,
        interval: float,
        batch_size: int,
        publish_timeout: float = PUBLISH_TIMEOUT_SECONDS,
        *,
        linger: float = 0.0,
    ) -> None:
        self._pool = pool
        self._linger = linger
        self._publish_timeout = publish_timeout
        self._broker = broker
        self._interval = interval
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refused_since: float | None = None

    @property
    def refused(self) -> bool:
        """The broker refused the last events it was offered; none has gone through since."""
        return self._refused_since is not None

    def wake(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many events went out, raises the first failure."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await store.pending_outbox(conn, self._batch_size)
            if not rows:
                return 0
            # What is pending goes together, EVENTS_PER_MESSAGE events of a kind to a message
            # (incidentflow.batched_events), the confirms awaited together. Each message's
            # outcome is kept apart, so what the broker confirmed is marked even when another
            # failed (its events would otherwise all go out twice).
            messages = list(in_messages(rows, lambda row: row["routing_key"], EVENTS_PER_MESSAGE))
            outcomes = await asyncio.gather(
                *(self._publish(message) for message in messages), return_exceptions=True
            )
            confirmed = [
                row["id"]
                for message, outcome in zip(messages, outcomes, strict=True)
                if not isinstance(outcome, BaseException)
                for row in message
            ]
            await store.mark_published(conn, confirmed)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        self._note_refusals(failures, confirmed=len(confirmed))
        if failures:
            raise failures[0]
        return len(confirmed)

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        # Each event under its incident's trace, stored with the row by the request. And a
        # deadline: one hung publish must not hold the outbox.
        routing_key: str = rows[0]["routing_key"]
        async with asyncio.timeout(self._publish_timeout):
            await publish_parts(
                self._broker,
                [Part(str(row["event_id"]), row["trace"] or {}, row["body"]) for row in rows],
                kind=routing_key.rsplit(".", 1)[0],
                routing_key=routing_key,
                mandatory=True,
            )

    def _note_refusals(self, failures: list[BaseException], *, confirmed: int) -> None:
        if any(is_refusal(f) for f in failures):
            if self._refused_since is None:
                self._refused_since = time.monotonic()
                log.error("broker refuses events (queue full): ingest answers 503 meanwhile")
        elif confirmed and self._refused_since is not None:
            log.info(
                "broker accepts events again",
                extra={"refused_seconds": round(time.monotonic() - self._refused_since, 1)},
            )
            self._refused_since = None

    async def _run(self) -> None:
        while True:
            # Broker or database away, a confirm cancelled by a dropped connection: the rows
            # stay in the outbox and the next round publishes them.
            with survive_round(log, "outbox relay") as round_:
                while await self.publish_pending() == self._batch_size:
                    pass
            if round_.failed:
                await asyncio.sleep(self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
                if self._linger:
                    await asyncio.sleep(self._linger)
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
