"""Callers waiting for their incident's acknowledgement, resolved from incident.acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import uuid


class Waiters:
    def __init__(self) -> None:
        self._futures: dict[uuid.UUID, asyncio.Future[None]] = {}

    def register(self, incident_id: uuid.UUID) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures[incident_id] = future
        return future

    def resolve(self, incident_id: uuid.UUID) -> None:
        future = self._futures.get(incident_id)
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(
        self, incident_id: uuid.UUID, future: asyncio.Future[None], seconds: float
    ) -> bool:
        """True when acknowledged within ``seconds``."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), timeout=seconds)
            return future.done()
        finally:
            self._futures.pop(incident_id, None)
