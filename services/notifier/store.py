"""Notifier's SQL: one notifications row per (incident, channel, kind), claimed before sending."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from contracts.events import NotificationKind
from services.notifier.compose import IncidentView

DELIVERED = ("sent", "logged")


@dataclass(frozen=True)
class Key:
    incident_id: uuid.UUID
    channel: str
    kind: NotificationKind


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to claim a notification for sending.

    ``lease`` is set when this delivery owns the row: its lease_until, which also serves as
    the claim's token (a later claim after expiry has another).
    """

    status: str
    lease: datetime | None
    retryable: bool = True

    @property
    def owned(self) -> bool:
        return self.lease is not None


async def claim(
    conn: asyncpg.Connection, key: Key, recipient: str | None, message: str, lease_seconds: int
) -> Claim:
    """Atomically take the notification for sending when nobody delivered or holds it."""
    lease = await conn.fetchval(
        """
        INSERT INTO notifications AS n
            (incident_id, channel, kind, recipient, message, status, lease_until, attempts)
        VALUES ($1, $2, $3, $4, $5, 'sending', now() + $6 * interval '1 second', 1)
        ON CONFLICT (incident_id, channel, kind) DO UPDATE
        SET status = 'sending', lease_until = EXCLUDED.lease_until, attempts = n.attempts + 1,
            recipient = EXCLUDED.recipient, message = EXCLUDED.message
        WHERE n.status = 'queued'
           OR (n.status = 'failed' AND n.retryable)
           OR (n.status = 'sending' AND n.lease_until < now())
        RETURNING lease_until
        """,
        key.incident_id,
        key.channel,
        key.kind,
        recipient,
        message,
        lease_seconds,
    )
    if lease is not None:
        return Claim("sending", lease)
    row = await conn.fetchrow(
        """
        SELECT status, retryable FROM notifications
        WHERE incident_id = $1 AND channel = $2 AND kind = $3
        """,
        key.incident_id,
        key.channel,
        key.kind,
    )
    # The row exists (the insert conflicted); it may have changed since, which only means
    # the caller looks again on the next delivery.
    return Claim(row["status"], None, row["retryable"])


async def record_delivered(
    conn: asyncpg.Connection, key: Key, status: str, provider_message_id: str | None
) -> None:
    # Whoever holds the row now, the provider took the message: that is the fact to keep.
    await conn.execute(
        """
        UPDATE notifications
        SET status = $4, provider_message_id = $5, last_error = NULL, lease_until = NULL,
            sent_at = COALESCE(sent_at, now())
        WHERE incident_id = $1 AND channel = $2 AND kind = $3
        """,
        key.incident_id,
        key.channel,
        key.kind,
        status,
        provider_message_id,
    )


async def record_failure(
    conn: asyncpg.Connection, key: Key, lease: datetime, error: str, *, retryable: bool, final: bool
) -> None:
    """A send of ours failed: back to ``queued`` for the next delivery, or ``failed`` when
    no delivery will follow (the last one) or retrying cannot help."""
    await conn.execute(
        """
        UPDATE notifications
        SET status = CASE WHEN $6 OR NOT $5 THEN 'failed' ELSE 'queued' END,
            retryable = $5, last_error = $4, lease_until = NULL
        WHERE incident_id = $1 AND channel = $2 AND kind = $3
          AND status = 'sending' AND lease_until = $7
        """,
        key.incident_id,
        key.channel,
        key.kind,
        error[:500],
        retryable,
        final,
        lease,
    )


async def record_refused(
    conn: asyncpg.Connection, key: Key, recipient: str | None, message: str, reason: str
) -> None:
    """A notification that cannot be sent at all (no valid recipient): failed, for good."""
    await conn.execute(
        """
        INSERT INTO notifications AS n
            (incident_id, channel, kind, recipient, message, status, retryable, last_error)
        VALUES ($1, $2, $3, $4, $5, 'failed', false, $6)
        ON CONFLICT (incident_id, channel, kind) DO UPDATE
        SET status = 'failed', retryable = false, last_error = EXCLUDED.last_error
        WHERE n.status IN ('queued', 'failed')
        """,
        key.incident_id,
        key.channel,
        key.kind,
        recipient,
        message,
        reason,
    )


async def mark_acknowledged(conn: asyncpg.Connection, incident_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE incidents SET acknowledged_at = now() WHERE id = $1 AND acknowledged_at IS NULL",
        incident_id,
    )


async def incident_for_reminder(
    conn: asyncpg.Connection, incident_id: uuid.UUID
) -> tuple[str, IncidentView] | None:
    row = await conn.fetchrow(
        """
        SELECT id, ticket_id, message, email, channel, created_at, status
        FROM incidents WHERE id = $1
        """,
        incident_id,
    )
    if row is None:
        return None
    view = IncidentView(
        incident_id=row["id"],
        ticket_id=row["ticket_id"],
        message=row["message"],
        email=row["email"],
        channel=row["channel"],
        created_at=row["created_at"],
    )
    return row["status"], view


async def mark_reminder(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    reminder_id: int,
    state: str,
    *,
    customer_follow_up: bool,
) -> None:
    await conn.execute(
        "UPDATE reminders SET state = $2, updated_at = now() WHERE id = $1", reminder_id, state
    )
    if state == "sent" and customer_follow_up:
        await conn.execute("UPDATE incidents SET reminder_sent = true WHERE id = $1", incident_id)
