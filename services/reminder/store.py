"""Reminder's SQL: the reminders table is the record of every follow-up promised."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from contracts.events import IncidentMessageReceived, IncidentTicketed
from incidentflow.audit import (
    HANDLED_COLUMNS,
    HANDLED_CTE,
    HANDLED_PARAMETERS,
    handled_arguments,
    record_handled,
)

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


@dataclass(frozen=True)
class Schedule:
    """The reminders one ticketed incident gets: (kind, due_at) each."""

    event: IncidentTicketed
    reminders: Sequence[tuple[str, datetime]]


SCHEDULE = f"""
WITH step AS (
    SELECT * FROM unnest({HANDLED_PARAMETERS}) AS s({HANDLED_COLUMNS})
), {HANDLED_CTE}
INSERT INTO reminders (incident_id, kind, due_at)
SELECT * FROM unnest($8::uuid[], $9::text[], $10::timestamptz[])
ON CONFLICT (incident_id, kind) DO NOTHING
"""


async def schedule_many(
    conn: asyncpg.Connection, service: str, schedules: Sequence[Schedule]
) -> None:
    """Audit each event and record its reminders; a reminder already recorded (a redelivered
    event) keeps its row, whatever became of it since."""
    wanted = [
        (s.event.incident_id, kind, due_at) for s in schedules for kind, due_at in s.reminders
    ]
    await conn.execute(
        SCHEDULE,
        *handled_arguments(service, [s.event for s in schedules], ["scheduled"] * len(schedules)),
        [incident_id for incident_id, _, _ in wanted],
        [kind for _, kind, _ in wanted],
        [due_at for _, _, due_at in wanted],
    )


@dataclass(frozen=True)
class Fired:
    """A reminder a firing claimed: ``state`` is 'requested' when its incident is still
    open (a reminder.requested is to go out before the claim commits), 'skipped' when it
    was resolved."""

    reminder: Reminder
    ticket_id: str
    email: str
    message: str
    incident_created: datetime


# One statement claims a batch (FOR UPDATE SKIP LOCKED: concurrent firings and replicas
# never take the same reminder), decides each against its incident's status and audits it,
# in the transaction that publishes the requests (Reminders.fire_due). Earlier
# versions committed the claim first as 'requesting', then 'requested' once confirmed; a
# reminder such a process left 'requesting' longer than the lease is claimed again.
#
# Each kind is read by an ordered scan of its own partial index, never both in one OR: the
# planner answers an OR with bitmap scans, which visit every index entry of the range, the
# dead ones of every reminder fired since the last vacuum included (and mark none of them
# dead). Over a million reminders with autovacuum behind, that was 650,000 entries and
# 170 ms per claim; an ordered index scan stops at the limit and marks what it found dead.
CLAIM_DUE = f"""
WITH due AS (
    -- The conditions sit in the locking queries themselves: a row another firing changed
    -- meanwhile is checked again once locked, and no longer qualifies.
    SELECT id FROM reminders
    WHERE state = 'scheduled' AND due_at <= $1 AND ($2::bigint IS NULL OR id = $2)
    ORDER BY due_at LIMIT $4
    FOR UPDATE SKIP LOCKED
), lapsed AS (
    SELECT id FROM reminders
    WHERE $3::float8 IS NOT NULL
      AND state = 'requesting' AND updated_at < now() - make_interval(secs => $3)
      AND ($2::bigint IS NULL OR id = $2)
    ORDER BY updated_at LIMIT $4
    FOR UPDATE SKIP LOCKED
), claimed AS (
    SELECT id FROM due UNION ALL SELECT id FROM lapsed
), candidates AS (
    SELECT r.id, r.kind, i.customer_id, i.status,
           -- Among the customer's open incidents only: a resolved one sends nothing.
           row_number() OVER (PARTITION BY i.customer_id, r.kind, i.status = 'open'
                              ORDER BY r.due_at, r.id) AS rank
    FROM claimed
    JOIN reminders r ON r.id = claimed.id
    JOIN incidents i ON i.id = r.incident_id
), followed_up AS (
    -- One follow-up per customer at a time (docs/adr/0057): the customer's row is taken only
    -- when their last follow-up is older than $6 seconds. A concurrent claim for the same
    -- customer waits on the row, then sees the newer time (ON CONFLICT re-checks the newest
    -- version), so the two never both go out. Customers in order: no deadlock between claims.
    INSERT INTO customer_follow_ups AS last (customer_id, followed_up_at)
    SELECT customer_id, now() FROM candidates
    WHERE $6::float8 > 0 AND kind = '{FOLLOW_UP}' AND status = 'open' AND rank = 1
    ORDER BY customer_id
    ON CONFLICT (customer_id) DO UPDATE SET followed_up_at = excluded.followed_up_at
    WHERE last.followed_up_at <= now() - make_interval(secs => $6)
    RETURNING customer_id
), decided AS (
    -- Escalations go out for each incident: the support team wants every one.
    SELECT id,
           CASE WHEN status <> 'open' THEN 'skipped: incident resolved'
                WHEN kind = '{FOLLOW_UP}' AND $6::float8 > 0
                     AND (rank > 1 OR customer_id NOT IN (SELECT customer_id FROM followed_up))
                THEN 'skipped: customer followed up'
                ELSE 'requested' END AS outcome
    FROM candidates
), fired AS (
    UPDATE reminders r
    SET state = CASE decided.outcome WHEN 'requested' THEN 'requested' ELSE 'skipped' END,
        attempts = r.attempts + 1, updated_at = now()
    FROM decided, incidents i
    WHERE r.id = decided.id AND i.id = r.incident_id
    RETURNING r.*, i.ticket_id, i.email, i.message, i.created_at AS incident_created,
              decided.outcome
), audited AS (
    -- Each reminder's row holds a reminder.due event, as if one had come for it alone.
    INSERT INTO audit_events
        (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
    SELECT $5, 'reminder.due', due.event_id, due.incident_id, due.occurred_at,
           jsonb_build_object(
               'event_id', due.event_id, 'incident_id', due.incident_id,
               'occurred_at', due.occurred_at, 'schema_version', 1, 'trace', '{{}}'::jsonb,
               'reminder_id', due.id, 'kind', due.kind, 'due_at', due.due_at
           ),
           due.outcome
    FROM (SELECT fired.*, gen_random_uuid() AS event_id, now() AS occurred_at FROM fired) due
)
SELECT * FROM fired
"""


async def claim_due(
    conn: asyncpg.Connection,
    service: str,
    until: datetime,
    *,
    reminder_id: int | None = None,
    lease_seconds: float | None,
    limit: int,
    customer_gap_seconds: float = 0,
) -> list[Fired]:
    """Claim up to ``limit`` reminders due by ``until`` (or just ``reminder_id``), oldest
    first, and with a ``lease_seconds``, up to ``limit`` whose request lapsed (the sweep's
    job: it reads an index of every request since the last vacuum), and decide each:
    'requested' for an open incident, 'skipped' for a resolved one, and for a customer's
    follow-up while another of theirs went out less than ``customer_gap_seconds`` ago."""
    rows = await conn.fetch(
        CLAIM_DUE, until, reminder_id, lease_seconds, limit, service, customer_gap_seconds
    )
    return [
        Fired(_reminder(r), r["ticket_id"], r["email"], r["message"], r["incident_created"])
        for r in rows
    ]


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
    """Cancel the incident's pending reminders; a tick arriving later does nothing for them."""
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
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    action: str,
    reminders: list[Reminder],
    by: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('operator', $1, gen_random_uuid(), $2, now(), $3, $4)
        """,
        f"reminder.{action}",
        incident_id,
        {"reminder_ids": [r.id for r in reminders], "by": by},
        f"{action}: {len(reminders)} reminder(s) by {by}",
    )


async def incident_kind(
    conn: asyncpg.Connection, incident_id: uuid.UUID
) -> tuple[str | None, str | None] | None:
    """The incident's category and sentiment (None until its steps set them), if it exists."""
    row = await conn.fetchrow(
        "SELECT classification, sentiment FROM incidents WHERE id = $1", incident_id
    )
    return (row["classification"], row["sentiment"]) if row else None


# A follow-up not yet fired moves to its new time; one cancelled (the incident was resolved,
# then reopened by this message) or skipped comes back. One already requested or sent stays:
# the customer had their follow-up, and the notifier sends one per incident.
RESTART_FOLLOW_UP = f"""
INSERT INTO reminders (incident_id, kind, due_at) VALUES ($1, '{FOLLOW_UP}', $2)
ON CONFLICT (incident_id, kind) DO UPDATE
SET due_at = EXCLUDED.due_at, state = 'scheduled', attempts = 0, updated_at = now()
WHERE reminders.state IN ('scheduled', 'cancelled', 'skipped')
RETURNING due_at
"""


async def restart_follow_up(
    conn: asyncpg.Connection, service: str, event: IncidentMessageReceived, due_at: datetime
) -> datetime | None:
    """Audit the message's event and set the follow-up's clock to ``due_at``; the time it
    is due at, or None when nothing changed (a redelivery, a follow-up already sent)."""
    async with conn.transaction():
        if not await record_handled(conn, service, event, "follow-up restarted"):
            return None
        return await conn.fetchval(  # type: ignore[no-any-return]
            RESTART_FOLLOW_UP, event.incident_id, due_at
        )
