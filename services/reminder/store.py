"""Reminder's SQL: the reminders table is the record of every follow-up promised."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

FOLLOW_UP = "follow_up"  # to the customer
ESCALATION = "escalation"  # to the support team


@dataclass(frozen=True)
class Reminder:
    id: int
    incident_id: uuid.UUID
    kind: str
    due_at: datetime
    state: str
    attempts: int = 0


def _reminder(row: asyncpg.Record) -> Reminder:
    return Reminder(
        row["id"], row["incident_id"], row["kind"], row["due_at"], row["state"], row["attempts"]
    )


async def schedule(
    conn: asyncpg.Connection, incident_id: uuid.UUID, kind: str, due_at: datetime
) -> Reminder:
    """The incident's reminder of this kind, created on first call."""
    await conn.execute(
        """
        INSERT INTO reminders (incident_id, kind, due_at) VALUES ($1, $2, $3)
        ON CONFLICT (incident_id, kind) DO NOTHING
        """,
        incident_id,
        kind,
        due_at,
    )
    row = await conn.fetchrow(
        "SELECT * FROM reminders WHERE incident_id = $1 AND kind = $2", incident_id, kind
    )
    assert row is not None
    return _reminder(row)


async def lock_for_firing(
    conn: asyncpg.Connection, reminder_id: int
) -> tuple[Reminder, str, asyncpg.Record] | None:
    """The reminder, its incident's status and the incident, locked against a second firing."""
    row = await conn.fetchrow(
        """
        SELECT r.*, i.status, i.ticket_id, i.email, i.message, i.created_at AS incident_created
        FROM reminders r JOIN incidents i ON i.id = r.incident_id
        WHERE r.id = $1 FOR UPDATE OF r
        """,
        reminder_id,
    )
    if row is None:
        return None
    return _reminder(row), row["status"], row


async def set_state(conn: asyncpg.Connection, reminder_id: int, state: str) -> None:
    await conn.execute(
        """
        UPDATE reminders SET state = $2, attempts = attempts + 1, updated_at = now()
        WHERE id = $1
        """,
        reminder_id,
        state,
    )


async def overdue(conn: asyncpg.Connection, grace_seconds: int, limit: int = 500) -> list[Reminder]:
    rows = await conn.fetch(
        """
        SELECT * FROM reminders
        WHERE state = 'scheduled' AND due_at < now() - make_interval(secs => $1)
        ORDER BY due_at LIMIT $2
        """,
        grace_seconds,
        limit,
    )
    return [_reminder(row) for row in rows]


async def listing(conn: asyncpg.Connection, state: str | None, limit: int) -> list[Reminder]:
    rows = await conn.fetch(
        """
        SELECT * FROM reminders WHERE ($1::text IS NULL OR state = $1)
        ORDER BY due_at LIMIT $2
        """,
        state,
        limit,
    )
    return [_reminder(row) for row in rows]


async def of_incident(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[Reminder]:
    rows = await conn.fetch(
        "SELECT * FROM reminders WHERE incident_id = $1 ORDER BY id", incident_id
    )
    return [_reminder(row) for row in rows]


async def cancel(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[Reminder]:
    """Cancel the incident's pending reminders; a due message arriving later does nothing."""
    rows = await conn.fetch(
        """
        UPDATE reminders SET state = 'cancelled', updated_at = now()
        WHERE incident_id = $1 AND state = 'scheduled' RETURNING *
        """,
        incident_id,
    )
    return [_reminder(row) for row in rows]


async def due_now(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[Reminder]:
    """Bring the incident's pending reminders forward to now."""
    rows = await conn.fetch(
        """
        UPDATE reminders SET due_at = now(), updated_at = now()
        WHERE incident_id = $1 AND state = 'scheduled' RETURNING *
        """,
        incident_id,
    )
    return [_reminder(row) for row in rows]


async def record_operator_action(
    conn: asyncpg.Connection, incident_id: uuid.UUID, action: str, reminders: list[Reminder]
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('operator', $1, gen_random_uuid(), $2, now(), $3, $4)
        """,
        f"reminder.{action}",
        incident_id,
        {"reminder_ids": [r.id for r in reminders]},
        f"{action}: {len(reminders)} reminder(s)",
    )
