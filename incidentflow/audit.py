"""The append-only audit trail: one row per event a service handled."""

from __future__ import annotations

import asyncpg

from contracts.events import Event


async def record_handled(
    conn: asyncpg.Connection, service: str, event: Event, outcome: str | None = None
) -> bool:
    """Record that ``service`` handled ``event``; False when it already had (a redelivery)."""
    inserted = await conn.fetchval(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (service, event_id) DO NOTHING
        RETURNING true
        """,
        service,
        event.name,
        event.event_id,
        event.incident_id,
        event.occurred_at,
        event.model_dump(mode="json"),
        outcome,
    )
    return bool(inserted)
