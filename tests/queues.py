"""Reading a queue on the real broker, as the tests' own consumer."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


async def take(url: str, queue: str) -> list[AbstractIncomingMessage]:
    """Every message waiting in ``queue`` now, taken off it (acknowledged on receipt)."""
    connection = await aio_pika.connect(url)
    taken: list[AbstractIncomingMessage] = []
    try:
        q = await (await connection.channel()).get_queue(queue)
        while (message := await q.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    finally:
        await connection.close()
    return taken
