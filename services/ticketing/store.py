"""Ticketing's SQL."""

import uuid

import asyncpg


async def existing_ticket(conn: asyncpg.Connection, incident_id: uuid.UUID) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT ticket_id FROM incidents WHERE id = $1", incident_id
    )


async def save_ticket(
    conn: asyncpg.Connection, incident_id: uuid.UUID, ticket_id: str, fallback: bool
) -> tuple[str, bool]:
    """Store the ticket unless one is already stored; return the stored one."""
    row = await conn.fetchrow(
        """
        UPDATE incidents SET ticket_id = $2, ticket_fallback = $3, ticketed_at = now()
        WHERE id = $1 AND ticket_id IS NULL
        RETURNING ticket_id, ticket_fallback
        """,
        incident_id,
        ticket_id,
        fallback,
    )
    if row is None:
        row = await conn.fetchrow(
            "SELECT ticket_id, ticket_fallback FROM incidents WHERE id = $1", incident_id
        )
    if row is None:
        raise LookupError(f"incident {incident_id} not found")
    return row["ticket_id"], row["ticket_fallback"]
