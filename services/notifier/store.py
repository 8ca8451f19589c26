"""Notifier's SQL: one notifications row per (incident, channel, kind), claimed before sending."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from contracts.events import IncidentTicketed
from incidentflow.audit import HANDLED_COLUMNS, HANDLED_CTE, HANDLED_PARAMETERS, handled_arguments
from services.notifier.journal import Entry
from services.notifier.notifications import (
    Claim,
    ClaimRequest,
    Delivered,
    IncidentView,
    Key,
    RecipientLimit,
)

CLAIM = """
INSERT INTO notifications AS n
    (incident_id, channel, kind, recipient, message, status, lease_until, attempts,
     recipient_key)
SELECT incident_id, channel, kind, recipient, message, 'sending',
       now() + lease_seconds * interval '1 second', 1, recipient_key
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[])
     AS c(incident_id, channel, kind, recipient, message, lease_seconds, recipient_key)
ON CONFLICT (incident_id, channel, kind) DO UPDATE
SET status = 'sending', lease_until = EXCLUDED.lease_until, attempts = n.attempts + 1,
    recipient = EXCLUDED.recipient, message = EXCLUDED.message
WHERE n.status = 'queued'
   OR (n.status = 'failed' AND n.retryable)
   OR (n.status = 'sending' AND n.lease_until < now())
RETURNING incident_id, channel, kind, lease_until
"""

STATUS = """
SELECT incident_id, channel, kind, status, retryable FROM notifications
WHERE (incident_id, channel, kind) IN
      (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]))
"""


# Serialises the claims of one recipient across notifier processes until the transaction
# ends, so two of them cannot both see room for the last notification of a window. Taken in
# key order: two transactions never wait for each other's locks in a cycle.
LOCK_RECIPIENTS = """
SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) AS ordered
"""

RECENT_PER_RECIPIENT = """
SELECT recipient_key, count(*) AS recent FROM notifications
WHERE recipient_key = ANY($1::text[]) AND status <> 'suppressed'
  AND created_at > now() - $2 * interval '1 second'
GROUP BY recipient_key
"""

EXISTING = """
SELECT incident_id, channel, kind FROM notifications
WHERE (incident_id, channel, kind) IN
      (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]))
"""

SUPPRESS = """
INSERT INTO notifications AS n
    (incident_id, channel, kind, recipient, message, status, retryable, last_error,
     recipient_key)
SELECT incident_id, channel, kind, recipient, message, 'suppressed', false, $6, recipient_key
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[])
     AS s(incident_id, channel, kind, recipient, message, recipient_key)
ON CONFLICT (incident_id, channel, kind) DO NOTHING
"""


async def over_the_limit(
    conn: asyncpg.Connection, requests: Sequence[ClaimRequest], limit: RecipientLimit
) -> list[ClaimRequest]:
    """The new notifications among ``requests`` that would take a recipient past ``limit``,
    recorded ``suppressed``. Inside the caller's transaction, which holds the recipients'
    locks until it has inserted the others (so they count for the next claim).

    A notification that already has a row (a retry, a redelivery) has had its place counted.
    """
    limited = [r for r in requests if r.recipient_key is not None]
    if not limited:
        return []
    existing_rows = await conn.fetch(
        EXISTING,
        [r.key.incident_id for r in limited],
        [r.key.channel for r in limited],
        [r.key.kind for r in limited],
    )
    existing = {Key(row["incident_id"], row["channel"], row["kind"]) for row in existing_rows}
    new = [r for r in limited if r.key not in existing]
    if not new:
        return []
    keys = [r.recipient_key for r in new]
    await conn.execute(LOCK_RECIPIENTS, keys)
    recent = {
        row["recipient_key"]: row["recent"]
        for row in await conn.fetch(RECENT_PER_RECIPIENT, keys, limit.window_seconds)
    }
    suppressed: list[ClaimRequest] = []
    for request in new:
        key = request.recipient_key
        if recent.get(key, 0) >= limit.amount:
            suppressed.append(request)
        else:
            recent[key] = recent.get(key, 0) + 1
    await suppress(conn, suppressed, limit.reason)
    return suppressed


async def suppress(conn: asyncpg.Connection, requests: Sequence[ClaimRequest], reason: str) -> None:
    """Record ``requests`` as not sent, for good, with ``reason``."""
    if not requests:
        return
    await conn.execute(
        SUPPRESS,
        [r.key.incident_id for r in requests],
        [r.key.channel for r in requests],
        [r.key.kind for r in requests],
        [r.recipient for r in requests],
        [r.message for r in requests],
        reason,
        [r.recipient_key for r in requests],
    )


async def claim_many(
    conn: asyncpg.Connection,
    requests: Sequence[ClaimRequest],
    limit: RecipientLimit | None = None,
) -> list[Claim]:
    """Atomically take each notification for sending when nobody delivered or holds it, and
    the recipient's ``limit`` allows it (else it is recorded ``suppressed``).

    One transaction for the lot; a key asked for twice in one batch is claimed once (the
    other ask finds it busy).
    """
    async with conn.transaction():
        return await _claim_many(conn, requests, limit)


async def _claim_many(
    conn: asyncpg.Connection, requests: Sequence[ClaimRequest], limit: RecipientLimit | None
) -> list[Claim]:
    asked = list({r.key: r for r in requests}.values())
    unique = asked
    if limit is not None:
        # Those recorded suppressed are found below, with the rows that were there.
        suppressed = {r.key for r in await over_the_limit(conn, asked, limit)}
        unique = [r for r in asked if r.key not in suppressed]
    claimed = {
        Key(row["incident_id"], row["channel"], row["kind"]): row["lease_until"]
        for row in await conn.fetch(
            CLAIM,
            [r.key.incident_id for r in unique],
            [r.key.channel for r in unique],
            [r.key.kind for r in unique],
            [r.recipient for r in unique],
            [r.message for r in unique],
            [r.lease_seconds for r in unique],
            [r.recipient_key for r in unique],
        )
    }
    taken = [r.key for r in asked if r.key not in claimed]
    found: dict[Key, asyncpg.Record] = {}
    if taken:
        # These rows exist (their insert conflicted); they may have changed since, which
        # only means the caller looks again on the next delivery.
        rows = await conn.fetch(
            STATUS,
            [k.incident_id for k in taken],
            [k.channel for k in taken],
            [k.kind for k in taken],
        )
        found = {Key(r["incident_id"], r["channel"], r["kind"]): r for r in rows}
    claims: list[Claim] = []
    for request in requests:
        lease = claimed.pop(request.key, None)  # popped: a second ask of a key finds it busy
        if lease is not None:
            claims.append(Claim("sending", lease))
        elif (row := found.get(request.key)) is not None:
            claims.append(Claim(row["status"], None, row["retryable"]))
        else:
            claims.append(Claim("sending", None))
    return claims


async def claim(
    conn: asyncpg.Connection, key: Key, recipient: str | None, message: str, lease_seconds: int
) -> Claim:
    """One notification's claim (see claim_many)."""
    return (await claim_many(conn, [ClaimRequest(key, recipient, message, lease_seconds)]))[0]


async def record_delivered_many(conn: asyncpg.Connection, records: Sequence[Delivered]) -> None:
    """Sends' outcomes, in one statement (the notifier's group commit of them)."""
    # Whoever holds the row now, the provider took the message: that is the fact to keep.
    await conn.execute(
        """
        UPDATE notifications n
        SET status = d.status, provider_message_id = d.provider_message_id, last_error = NULL,
            lease_until = NULL, sent_at = COALESCE(n.sent_at, now())
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
            AS d (incident_id, channel, kind, status, provider_message_id)
        WHERE n.incident_id = d.incident_id AND n.channel = d.channel AND n.kind = d.kind
        """,
        [key.incident_id for key, _, _ in records],
        [key.channel for key, _, _ in records],
        [key.kind for key, _, _ in records],
        [status for _, status, _ in records],
        [provider_id for _, _, provider_id in records],
    )


async def record_handed_over(
    conn: asyncpg.Connection, entries: Sequence[Entry], provider_message_id: str
) -> list[Key]:
    """Sends a dead process journaled as handed to the server: recorded as sent where the
    row is still in that very claim (``sending`` under the same lease). A row recorded since,
    or claimed again after its lease ran out, is left as it is. Returns the keys recorded."""
    rows = await conn.fetch(
        """
        UPDATE notifications n
        SET status = 'sent', provider_message_id = $5, last_error = NULL, lease_until = NULL,
            sent_at = COALESCE(sent_at, now())
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
             AS j(incident_id, channel, kind, lease_until)
        WHERE n.incident_id = j.incident_id AND n.channel = j.channel AND n.kind = j.kind
          AND n.status = 'sending' AND n.lease_until = j.lease_until
        RETURNING n.incident_id, n.channel, n.kind
        """,
        [e.key.incident_id for e in entries],
        [e.key.channel for e in entries],
        [e.key.kind for e in entries],
        [e.lease for e in entries],
        provider_message_id,
    )
    return [Key(r["incident_id"], r["channel"], r["kind"]) for r in rows]


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


ACKNOWLEDGE = f"""
WITH step AS (
    SELECT * FROM unnest({HANDLED_PARAMETERS}) AS s({HANDLED_COLUMNS})
), {HANDLED_CTE}
UPDATE incidents i SET acknowledged_at = now()
FROM step WHERE i.id = step.incident_id AND i.acknowledged_at IS NULL
"""


async def acknowledge_many(
    conn: asyncpg.Connection, service: str, events: Sequence[IncidentTicketed]
) -> None:
    """Audit each event and mark its incident acknowledged (once: the first time counts)."""
    await conn.execute(ACKNOWLEDGE, *handled_arguments(service, events))


async def incident_for_reminder(
    conn: asyncpg.Connection, incident_id: uuid.UUID
) -> tuple[str, IncidentView] | None:
    row = await conn.fetchrow(
        """
        SELECT id, ticket_id, message, email, phone, channel, created_at, language, status
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
        language=row["language"] or "en",
        phone=row["phone"],
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
