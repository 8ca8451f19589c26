"""Tickets kept in Postgres (``local_tickets``): the ticket system when none is configured."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from incidentflow.batching import Batcher
from services.ticketing.tickets import CommentRequest, TicketRequest, TicketSystemError

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
        self._opened = Batcher.pooled(pool, open_local_tickets)
        self._commented = Batcher.pooled_writes(pool, add_local_comments)

    async def create_ticket(self, request: TicketRequest) -> str:
        try:
            ticket_id = await self._opened.submit(request)
        except _TRANSIENT as exc:
            raise TicketSystemError(f"local tickets: {exc!r}", retryable=True) from exc
        if ticket_id is None:
            raise TicketSystemError("local ticket vanished", retryable=True)
        return ticket_id

    async def add_comment(self, request: CommentRequest) -> None:
        try:
            await self._commented.submit(request)
        except _TRANSIENT as exc:
            raise TicketSystemError(f"local tickets: {exc!r}", retryable=True) from exc
        except asyncpg.ForeignKeyViolationError as exc:
            # A fallback id (TKT-…) or another backend's: not a ticket of this table.
            raise TicketSystemError(
                f"no local ticket {request.ticket_id}", retryable=False
            ) from exc


OPEN_LOCAL_TICKETS = """
WITH wanted AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS w(incident_id, subject, category, sentiment, language)
), opened AS (
    INSERT INTO local_tickets (incident_id, subject, category, sentiment, language)
    SELECT * FROM wanted
    ON CONFLICT (incident_id) DO NOTHING
    RETURNING incident_id, ticket_id
)
SELECT incident_id, ticket_id FROM opened
UNION ALL
SELECT l.incident_id, l.ticket_id FROM local_tickets l JOIN wanted USING (incident_id)
WHERE l.incident_id NOT IN (SELECT incident_id FROM opened)
"""


async def open_local_tickets(
    conn: asyncpg.Connection, requests: Sequence[TicketRequest]
) -> list[str | None]:
    """Each incident's ticket id (``LOC-000042``), created on first call, the same ever
    after: one ticket per incident is the table's UNIQUE constraint, so no key is needed."""
    unique = list({r.incident_id: r for r in requests}.values())
    rows = await conn.fetch(
        OPEN_LOCAL_TICKETS,
        [r.incident_id for r in unique],
        [r.subject for r in unique],
        [r.category for r in unique],
        [r.sentiment for r in unique],
        [r.language for r in unique],
    )
    opened = {row["incident_id"]: row["ticket_id"] for row in rows}
    return [opened.get(r.incident_id) for r in requests]


ADD_LOCAL_COMMENTS = """
INSERT INTO local_ticket_comments (ticket_id, incident_id, message_id, channel, body)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[])
ON CONFLICT (incident_id, message_id) DO NOTHING
"""


async def add_local_comments(conn: asyncpg.Connection, requests: Sequence[CommentRequest]) -> None:
    """Each follow-up once on its ticket: a redelivered one (the same incident and message)
    adds nothing. The channel has a column of its own, so the body is the customer's words."""
    unique = list({(r.incident_id, r.message_id): r for r in requests}.values())
    await conn.execute(
        ADD_LOCAL_COMMENTS,
        [r.ticket_id for r in unique],
        [r.incident_id for r in unique],
        [r.message_id for r in unique],
        [r.channel for r in unique],
        [r.body for r in unique],
    )
