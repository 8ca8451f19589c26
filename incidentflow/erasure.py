"""Erasing a customer's personal data (a GDPR erasure request): `incidentflow erase`.

Contact details and message text are overwritten everywhere the database keeps them for that
customer's incidents; ids, categories, scores, times and the audit trail stay, so the history
of what the system did is intact without saying to whom or about what. The audit trail never
held them (migration 0013 scrubs every payload as it is written). The erasure itself is
recorded with a hash of the customer id, the count and the operator, not the data.

Dead letters (events kept whole in a ``*.dlq``) are masked by ``incidentflow.dlq.erase``,
which ``incidentflow erase --customer`` runs after this; they expire after
DEAD_LETTER_TTL_DAYS anyway. Mail already delivered to an inbox is out of reach.
"""

from __future__ import annotations

import hashlib
import uuid

import asyncpg

ERASED = "[erased]"

# Every column that holds a customer's contact details or words, per table, for the rows of
# the customer's incidents. tests/security/test_erasure.py scans every text and jsonb column
# of every table afterwards, so a column added elsewhere without an entry here fails it.
ERASE_STATEMENTS = (
    """
    UPDATE incidents
    SET message = $2, email = $2, phone = NULL, reason = NULL, erased_at = now()
    WHERE id = ANY($1::uuid[])
    """,
    """
    UPDATE incident_reports SET message = $2, email = $2, phone = NULL
    WHERE incident_id = ANY($1::uuid[])
    """,
    """
    UPDATE incident_messages SET body = $2, sender = $2, attachments = '[]'
    WHERE incident_id = ANY($1::uuid[])
    """,
    """
    UPDATE local_ticket_comments SET body = $2 WHERE incident_id = ANY($1::uuid[])
    """,
    """
    UPDATE notifications
    SET message = $2, recipient = $2, recipient_key = NULL, last_error = NULL
    WHERE incident_id = ANY($1::uuid[])
    """,
    """
    UPDATE classification_corrections SET note = NULL
    WHERE incident_id = ANY($1::uuid[]) AND note IS NOT NULL
    """,
    # Events not published yet keep their place in line, without the data.
    """
    UPDATE outbox
    SET payload = (payload - 'phone') || jsonb_build_object('message', $2::text, 'email', $2::text)
    WHERE (payload->>'incident_id')::uuid = ANY($1::uuid[])
    """,
)


EXPIRED = """
SELECT id FROM incidents
WHERE status = 'resolved' AND resolved_at < now() - $1 * interval '1 day'
  -- Not erased since it was resolved: one erased while still open may have had repeat
  -- reports linked to it afterwards.
  AND (erased_at IS NULL OR erased_at < resolved_at)
ORDER BY resolved_at LIMIT $2
FOR UPDATE SKIP LOCKED
"""
# Incidents erased per transaction by the retention job: short transactions, short locks.
EXPIRED_BATCH = 1000


def customer_digest(customer_id: str) -> str:
    return hashlib.sha256(customer_id.encode()).hexdigest()


async def erase_customer(
    conn: asyncpg.Connection, customer_id: str, operator: str
) -> list[uuid.UUID]:
    """Erase ``customer_id``'s personal data in one transaction; the incidents' ids."""
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id FROM incidents WHERE customer_id = $1 FOR UPDATE", customer_id
        )
        incident_ids = [row["id"] for row in rows]
        await _erase(conn, incident_ids)
        await conn.execute("DELETE FROM customer_follow_ups WHERE customer_id = $1", customer_id)
        await _record(conn, customer_digest(customer_id), len(incident_ids), operator)
    return incident_ids


async def erase_expired(conn: asyncpg.Connection, retention_days: int, operator: str) -> int:
    """Erase the personal data of incidents resolved more than ``retention_days`` ago, in
    batches; the number of incidents. Run daily by a scheduled job (RETENTION_DAYS)."""
    erased = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(EXPIRED, retention_days, EXPIRED_BATCH)
            incident_ids = [row["id"] for row in rows]
            if not incident_ids:
                return erased
            await _erase(conn, incident_ids)
            await _record(conn, f"retention:{retention_days}d", len(incident_ids), operator)
        erased += len(incident_ids)


async def _erase(conn: asyncpg.Connection, incident_ids: list[uuid.UUID]) -> None:
    if not incident_ids:
        return
    for statement in ERASE_STATEMENTS:
        # $1 the incidents; $2, where a statement writes it, the text left in place.
        arguments = (incident_ids, ERASED) if "$2" in statement else (incident_ids,)
        await conn.execute(statement, *arguments)


async def _record(conn: asyncpg.Connection, whose: str, incidents: int, operator: str) -> None:
    """The erasure, without the data: whose (a hash, or the retention rule), how many, who."""
    await conn.execute(
        "INSERT INTO erasures (customer_sha256, incidents, operator) VALUES ($1, $2, $3)",
        whose,
        incidents,
        operator,
    )
