"""Erasing a customer's personal data (a GDPR erasure request): `incidentflow erase`.

Contact details and message text are overwritten everywhere the database keeps them for that
customer's incidents; ids, categories, scores, times and the audit trail stay, so the history
of what the system did is intact without saying to whom or about what. The audit trail never
held them (migration 0013 scrubs every payload as it is written). The erasure itself is
recorded with a hash of the customer id, the count and the operator, not the data.

Not reached from here: messages still waiting in a dead-letter queue (they carry the event
whole) and mail already delivered to an inbox.
"""

from __future__ import annotations

import hashlib

import asyncpg

ERASED = "[erased]"

# Every column that holds a customer's contact details or words, per table, for the rows of
# the customer's incidents. tests/security/test_erasure.py scans every text and jsonb column
# of every table afterwards, so a column added elsewhere without an entry here fails it.
ERASE_STATEMENTS = (
    """
    UPDATE incidents SET message = $2, email = $2, phone = NULL, reason = NULL
    WHERE id = ANY($1::uuid[])
    """,
    """
    UPDATE incident_reports SET message = $2, email = $2, phone = NULL
    WHERE incident_id = ANY($1::uuid[])
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


def customer_digest(customer_id: str) -> str:
    return hashlib.sha256(customer_id.encode()).hexdigest()


async def erase_customer(conn: asyncpg.Connection, customer_id: str, operator: str) -> int:
    """Erase ``customer_id``'s personal data in one transaction; the number of incidents."""
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id FROM incidents WHERE customer_id = $1 FOR UPDATE", customer_id
        )
        incident_ids = [row["id"] for row in rows]
        if incident_ids:
            for statement in ERASE_STATEMENTS:
                await conn.execute(statement, incident_ids, ERASED)
        await conn.execute(
            "INSERT INTO erasures (customer_sha256, incidents, operator) VALUES ($1, $2, $3)",
            customer_digest(customer_id),
            len(incident_ids),
            operator,
        )
    return len(incident_ids)
