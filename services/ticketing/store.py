"""Ticketing's SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from contracts.events import derived_event_id
from services.ticketing.tickets import TicketRequest


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


@dataclass(frozen=True)
class ClaimedFallback:
    """An incident that got a fallback id, claimed for one reconciliation attempt."""

    request: TicketRequest
    fallback_ticket_id: str


async def claim_fallbacks(
    conn: asyncpg.Connection, limit: int, lease_seconds: float
) -> list[ClaimedFallback]:
    """Up to ``limit`` incidents still on a fallback id, not tried lately first, then oldest;
    each claimed for ``lease_seconds`` so another replica's round skips them."""
    rows = await conn.fetch(
        """
        UPDATE incidents SET ticket_reconcile_after = now() + make_interval(secs => $2)
        WHERE id IN (
            SELECT id FROM incidents
            WHERE ticket_fallback AND (ticket_reconcile_after IS NULL
                                       OR ticket_reconcile_after <= now())
            ORDER BY ticket_reconcile_after NULLS FIRST, created_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        RETURNING id, ticket_id, classification, message, customer_id, sentiment, created_at
        """,
        limit,
        lease_seconds,
    )
    return [
        ClaimedFallback(
            TicketRequest(
                incident_id=row["id"],
                category=row["classification"] or "other",
                message=row["message"],
                customer_id=row["customer_id"],
                sentiment=row["sentiment"] or "neutral",
            ),
            row["ticket_id"],
        )
        for row in sorted(rows, key=lambda row: row["created_at"])
    ]


async def release_fallbacks(conn: asyncpg.Connection, incident_ids: list[uuid.UUID]) -> None:
    """Give claimed incidents back: due again now, behind the ones not tried lately."""
    await conn.execute(
        """
        UPDATE incidents SET ticket_reconcile_after = now()
        WHERE id = ANY($1::uuid[]) AND ticket_fallback
        """,
        incident_ids,
    )


async def replace_fallback(
    conn: asyncpg.Connection,
    service: str,
    incident_id: uuid.UUID,
    fallback_ticket_id: str,
    ticket_id: str,
) -> bool:
    """Swap the fallback id for the real one and audit it; False when it was swapped already
    (another replica, or an earlier round whose commit we did not see). Call in a transaction."""
    swapped = await conn.fetchval(
        """
        UPDATE incidents
        SET ticket_id = $3, ticket_fallback = false, ticket_reconcile_after = NULL
        WHERE id = $1 AND ticket_fallback AND ticket_id = $2
        RETURNING true
        """,
        incident_id,
        fallback_ticket_id,
        ticket_id,
    )
    if not swapped:
        return False
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ($1, 'ticket.reconciled', $2, $3, now(), $4, 'reconciled')
        ON CONFLICT (service, event_id) DO NOTHING
        """,
        service,
        derived_event_id(incident_id, "ticket-reconciled"),
        incident_id,
        {"fallback_ticket_id": fallback_ticket_id, "ticket_id": ticket_id},
    )
    return True
