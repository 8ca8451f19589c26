"""How many messages wait in each dead-letter queue, for ``/api/stats``."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aiormq.exceptions import AMQPError

from incidentflow import dlq

log = logging.getLogger("incidentflow.ingest.deadletters")

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
                # A queue not declared yet has had nothing dead-lettered to it.
                return {name: count or 0 for name, count in await dlq.counts(connection)}
    except (OSError, AMQPError, TimeoutError) as exc:
        log.warning("dead-letter counts unavailable", extra={"error": repr(exc)})
        return None
