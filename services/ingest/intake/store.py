"""The intake's SQL: receipts of what came in, a sender's incidents, a conversation's messages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

Outcome = Literal["incident", "message", "repeat", "ignored"]


@dataclass(frozen=True)
class Receipt:
    outcome: Outcome
    incident_id: uuid.UUID | None
    reason: str | None = None


async def receipt(conn: asyncpg.Connection, channel: str, external_id: str) -> Receipt | None:
    row = await conn.fetchrow(
        "SELECT outcome, incident_id, reason FROM inbound_receipts"
        " WHERE channel = $1 AND external_id = $2",
        channel,
        external_id,
    )
    return Receipt(row["outcome"], row["incident_id"], row["reason"]) if row else None


async def keep_receipt(
    conn: asyncpg.Connection, channel: str, external_id: str, receipt: Receipt
) -> None:
    await conn.execute(
        "INSERT INTO inbound_receipts (channel, external_id, incident_id, outcome, reason)"
        " VALUES ($1, $2, $3, $4, $5)",
        channel,
        external_id,
        receipt.incident_id,
        receipt.outcome,
        receipt.reason,
    )


async def customer_for_address(conn: asyncpg.Connection, address: str) -> str | None:
    """The customer id an integrator gave this address before (the latest), else any earlier
    intake incident's; None for an address never seen."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT customer_id FROM incidents WHERE lower(email) = lower($1)
        ORDER BY (customer_id <> lower(email)) DESC, created_at DESC LIMIT 1
        """,
        address,
    )


async def customer_for_number(conn: asyncpg.Connection, number: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT customer_id FROM incidents WHERE phone = $1
        ORDER BY (customer_id <> phone) DESC, created_at DESC LIMIT 1
        """,
        number,
    )


async def replied_incident(
    conn: asyncpg.Connection,
    address: str,
    incident_ids: Sequence[uuid.UUID],
    ticket_ids: Sequence[str],
) -> uuid.UUID | None:
    """The incident a mail from ``address`` answers: one named by the ids in its reply headers
    or the ticket reference in its subject, and only one of that same address's incidents, so
    nobody writes into another customer's incident by naming it."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT id FROM incidents
        WHERE lower(email) = lower($1) AND (id = ANY($2::uuid[]) OR ticket_id = ANY($3::text[]))
        ORDER BY created_at DESC LIMIT 1
        """,
        address,
        list(incident_ids),
        list(ticket_ids),
    )


async def open_incident_of_number(
    conn: asyncpg.Connection, number: str, within_hours: float
) -> uuid.UUID | None:
    """The sender's latest open incident from the last ``within_hours``: the one a text joins."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT id FROM incidents
        WHERE phone = $1 AND status = 'open' AND created_at > now() - make_interval(secs => $2)
        ORDER BY created_at DESC LIMIT 1
        """,
        number,
        within_hours * 3600,
    )


async def add_message(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    channel: str,
    sender: str,
    body: str,
    attachments: list[dict[str, Any]],
) -> bool:
    """Keep a customer's later message on its incident and audit it; a resolved incident is
    reopened (audited ``incident.reopened``). Returns whether it was reopened."""
    await conn.execute(
        """
        INSERT INTO incident_messages (incident_id, channel, sender, body, attachments)
        VALUES ($1, $2, $3, $4, $5)
        """,
        incident_id,
        channel,
        sender,
        body,
        attachments,
    )
    reopened = await conn.fetchval(
        """
        UPDATE incidents SET status = 'open', resolved_at = NULL
        WHERE id = $1 AND status = 'resolved' RETURNING true
        """,
        incident_id,
    )
    await _audit(conn, incident_id, "incident.message_received", {"channel": channel}, "added")
    if reopened:
        await _audit(
            conn,
            incident_id,
            "incident.reopened",
            {"status": "open", "by": "customer"},
            "reopened by the customer's message",
        )
    return bool(reopened)


async def _audit(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    event_name: str,
    payload: dict[str, Any],
    outcome: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('ingest', $1, gen_random_uuid(), $2, now(), $3, $4)
        """,
        event_name,
        incident_id,
        payload,
        outcome,
    )


async def conversation(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """The incident's messages in order: the first (the incident's own), the customer's later
    ones, and what was sent to the customer (notifications to the team left out)."""
    rows = await conn.fetch(
        """
        SELECT 'in' AS direction, channel, message AS body, '[]'::jsonb AS attachments,
               NULL::text AS kind, NULL::text AS status, created_at AS at, language, sentiment
        FROM incidents WHERE id = $1
        UNION ALL
        SELECT 'in', channel, body, attachments, NULL, NULL, received_at, NULL, NULL
        FROM incident_messages WHERE incident_id = $1
        UNION ALL
        SELECT 'out', channel, message, '[]'::jsonb, kind, status,
               coalesce(sent_at, created_at), NULL, NULL
        FROM notifications WHERE incident_id = $1 AND kind <> 'escalation'
        ORDER BY at, direction
        """,
        incident_id,
    )
    return [dict(r) for r in rows]
