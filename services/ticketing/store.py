"""Ticketing's SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from contracts.events import IncidentClassified, derived_event_id
from incidentflow.audit import HANDLED_COLUMNS, HANDLED_CTE, HANDLED_PARAMETERS, handled_arguments
from services.ticketing.tickets import TicketRequest


async def existing_tickets(
    conn: asyncpg.Connection, incident_ids: Sequence[uuid.UUID]
) -> list[str | None]:
    """Each incident's stored ticket id, None where it has none yet."""
    rows = await conn.fetch(
        "SELECT id, ticket_id FROM incidents WHERE id = ANY($1::uuid[])", incident_ids
    )
    found = {row["id"]: row["ticket_id"] for row in rows}
    return [found.get(incident_id) for incident_id in incident_ids]


SAVE_TICKETS = f"""
WITH step AS (
    SELECT * FROM unnest({HANDLED_PARAMETERS}, $8::text[], $9::bool[])
    AS s({HANDLED_COLUMNS}, ticket_id, fallback)
), {HANDLED_CTE},
saved AS (
    UPDATE incidents i SET ticket_id = step.ticket_id, ticket_fallback = step.fallback,
                           ticketed_at = now()
    FROM step WHERE i.id = step.incident_id AND i.ticket_id IS NULL
    RETURNING i.id, i.ticket_id, i.ticket_fallback
)
SELECT id, ticket_id, ticket_fallback FROM saved
UNION ALL
SELECT i.id, i.ticket_id, i.ticket_fallback FROM incidents i JOIN step ON i.id = step.incident_id
WHERE i.id NOT IN (SELECT id FROM saved)
"""

# An event with its ticket id and whether that is the fallback id.
Opened = tuple[IncidentClassified, str, bool]
Ticketed = Sequence[Opened]


async def save_tickets(
    conn: asyncpg.Connection, service: str, ticketed: Ticketed
) -> list[tuple[str, bool] | None]:
    """Audit each event and store its ticket unless one is stored already; per event the
    stored ticket and whether it is a fallback id, None when the incident does not exist."""
    rows = await conn.fetch(
        SAVE_TICKETS,
        *handled_arguments(service, [event for event, _, _ in ticketed]),
        [ticket_id for _, ticket_id, _ in ticketed],
        [fallback for _, _, fallback in ticketed],
    )
    stored = {row["id"]: (row["ticket_id"], row["ticket_fallback"]) for row in rows}
    return [stored.get(event.incident_id) for event, _, _ in ticketed]


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
        RETURNING id, ticket_id, classification, message, customer_id, sentiment, language,
                  created_at
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
                language=row["language"] or "en",
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


async def ticket_of(conn: asyncpg.Connection, incident_id: uuid.UUID) -> tuple[str | None, bool]:
    """The incident's ticket id (None before it is ticketed) and whether it is a fallback."""
    row = await conn.fetchrow(
        "SELECT ticket_id, ticket_fallback FROM incidents WHERE id = $1", incident_id
    )
    if row is None:
        raise LookupError(f"incident {incident_id} not found")
    return row["ticket_id"], bool(row["ticket_fallback"])


async def handled_before(conn: asyncpg.Connection, service: str, event_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM audit_events WHERE service = $1 AND event_id = $2",
            service,
            event_id,
        )
    )
