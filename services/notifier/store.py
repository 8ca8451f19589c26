"""Notifier's SQL: one notifications row per (incident, channel, kind), claimed before sending."""

from __future__ import annotations

import uuid

import asyncpg

from contracts.events import NotificationKind
from services.notifier.compose import IncidentView

DELIVERED = ("sent", "logged")


async def claim(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    channel: str,
    kind: NotificationKind,
    recipient: str | None,
    message: str,
) -> bool:
    """True when this notification still has to go out (never delivered before)."""
    await conn.execute(
        """
        INSERT INTO notifications (incident_id, channel, kind, recipient, message, status)
        VALUES ($1, $2, $3, $4, $5, 'queued')
        ON CONFLICT (incident_id, channel, kind) DO NOTHING
        """,
        incident_id,
        channel,
        kind,
        recipient,
        message,
    )
    status = await conn.fetchval(
        "SELECT status FROM notifications WHERE incident_id = $1 AND channel = $2 AND kind = $3",
        incident_id,
        channel,
        kind,
    )
    return status not in DELIVERED


async def mark(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    channel: str,
    kind: NotificationKind,
    status: str,
    *,
    provider_message_id: str | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        """
        UPDATE notifications
        SET status = $4, provider_message_id = COALESCE($5, provider_message_id),
            last_error = $6, attempts = attempts + 1,
            sent_at = CASE WHEN $4 IN ('sent', 'logged') THEN now() ELSE sent_at END
        WHERE incident_id = $1 AND channel = $2 AND kind = $3
        """,
        incident_id,
        channel,
        kind,
        status,
        provider_message_id,
        error,
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
