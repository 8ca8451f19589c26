"""The intake's SQL: receipts of what came in, a sender's incidents, a conversation's messages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from contracts.events import Event

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
) -> tuple[int, bool]:
    """Keep a customer's later message on its incident; a resolved incident is reopened
    (audited ``incident.reopened``, by the customer). The message's id, and whether it
    reopened the incident."""
    message_id = await conn.fetchval(
        """
        INSERT INTO incident_messages (incident_id, channel, sender, body, attachments)
        VALUES ($1, $2, $3, $4, $5) RETURNING id
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
    if reopened:
        await conn.execute(
            """
            INSERT INTO audit_events
                (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
            VALUES ('ingest', 'incident.reopened', gen_random_uuid(), $1, now(), $2,
                    'reopened by the customer''s message')
            """,
            incident_id,
            {"status": "open", "by": "customer"},
        )
    return message_id, bool(reopened)


async def queue_event(conn: asyncpg.Connection, event: Event, outcome: str) -> None:
    """``event`` in the outbox, for the relay to publish, and in the audit trail: in the
    caller's transaction, as ``ingest_report`` does for a new incident's."""
    payload = event.model_dump(mode="json")
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, payload) VALUES ($1, $2, $3)",
        event.event_id,
        event.routing_key(),
        payload,
    )
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('ingest', $1, $2, $3, $4, $5, $6)
        """,
        event.name,
        event.event_id,
        event.incident_id,
        event.occurred_at,
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
        SELECT 'in', channel, body, attachments, NULL, NULL, received_at, language, sentiment
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
