"""The append-only audit trail: one row per event a service handled."""

from __future__ import annotations

from collections.abc import Sequence

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


# The audit half of a step's batched write. A step's statement starts with
# ``WITH step AS (SELECT * FROM unnest($2 … $7, <its own columns>) AS s(HANDLED_COLUMNS, …))``
# and then this CTE, whose ``handled`` rows are the events not handled before: the step
# writes for those only, so a redelivered event changes nothing. ``$1`` is the service.
HANDLED_COLUMNS = "event_id, event_name, incident_id, occurred_at, payload, outcome"
HANDLED_PARAMETERS = "$2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[], $6::text[], $7::text[]"
HANDLED_CTE = """
handled AS (
    INSERT INTO audit_events
        (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
    SELECT $1, event_name, event_id, incident_id, occurred_at, payload::jsonb, outcome
    FROM step
    ON CONFLICT (service, event_id) DO NOTHING
    RETURNING event_id, incident_id
)"""


def handled_arguments(
    service: str, events: Sequence[Event], outcomes: Sequence[str | None] | None = None
) -> list[object]:
    """``$1`` … ``$7`` of a statement built on HANDLED_CTE, for these events."""
    return [
        service,
        [e.event_id for e in events],
        [e.name for e in events],
        [e.incident_id for e in events],
        [e.occurred_at for e in events],
        [e.model_dump_json() for e in events],
        list(outcomes) if outcomes is not None else [None] * len(events),
    ]
