"""How many messages wait in each dead-letter queue, asked of the broker (passive declares)."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from contracts.topology import WORK_ROUTES

log = logging.getLogger("incidentflow.ingest.deadletters")

DEAD_LETTER_QUEUES = tuple(route.dead_letter_queue.name for route in WORK_ROUTES)


TIMEOUT_SECONDS = 3.0


async def dead_letter_counts(url: str) -> dict[str, int] | None:
    """Queue name → messages; None when the broker cannot be asked.

    Its own short connection: a passive declare of a missing queue closes the channel, which
    must not be one the relay publishes on.
    """
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            connection = await aio_pika.connect(url, timeout=TIMEOUT_SECONDS)
            async with connection:
                return await _count(connection)
    except (OSError, AMQPError, TimeoutError) as exc:
        log.warning("dead-letter counts unavailable", extra={"error": repr(exc)})
        return None


async def _count(connection: AbstractConnection) -> dict[str, int]:
    counts: dict[str, int] = {}
    channel: AbstractChannel = await connection.channel()
    for name in DEAD_LETTER_QUEUES:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            counts[name] = 0  # not declared yet: nothing has been dead-lettered there
            channel = await connection.channel()
            continue
        counts[name] = queue.declaration_result.message_count or 0
    return counts
