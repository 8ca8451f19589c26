"""Tickets kept in Postgres (``local_tickets``): the ticket system when none is configured."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from services.ticketing.tickets import TicketRequest, TicketSystemError

# The database being away is worth a retry; anything else it says is not.
_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


class LocalTicketSystem:
    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        # A getter: the service's pool opens after this is built.
        self._pool = pool

    async def create_ticket(self, request: TicketRequest) -> str:
        try:
            async with self._pool().acquire() as conn:
                return await open_local_ticket(conn, request)
        except _TRANSIENT as exc:
            raise TicketSystemError(f"local tickets: {exc!r}", retryable=True) from exc


async def open_local_ticket(conn: asyncpg.Connection, request: TicketRequest) -> str:
    """The incident's ticket id (``LOC-000042``), created on first call, the same ever after:
    one ticket per incident is the table's UNIQUE constraint, so no key is needed here."""
    ticket_id: str | None = await conn.fetchval(
        """
        INSERT INTO local_tickets (incident_id, subject, category, sentiment)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (incident_id) DO NOTHING
        RETURNING ticket_id
        """,
        request.incident_id,
        request.subject,
        request.category,
        request.sentiment,
    )
    if ticket_id is None:  # created before: by an earlier delivery, or a concurrent one
        ticket_id = await conn.fetchval(
            "SELECT ticket_id FROM local_tickets WHERE incident_id = $1", request.incident_id
        )
    if ticket_id is None:
        raise TicketSystemError("local ticket vanished", retryable=True)
    return ticket_id
