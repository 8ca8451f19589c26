"""Upgrading a database that holds incidents: from every earlier revision to the newest, the
incidents stay whole and the current code reads, changes and erases them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from incidentflow.db import alembic_config, create_pool, ensure_database, migrate
from incidentflow.erasure import ERASED, erase_customer
from incidentflow_tools.sandbox import drop_database
from services.ingest import store

# Every revision but the newest (walk_revisions starts at the head).
EARLIER = [
    script.revision
    for script in ScriptDirectory.from_config(alembic_config("postgresql://x/y")).walk_revisions()
][1:]


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    name = f"incidentflow_upgrade_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    asyncio.run(ensure_database(url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


async def an_incident_as_stored_then(conn: asyncpg.Connection) -> uuid.UUID:
    """An incident, its acknowledgement and its follow-up, in the columns the first revision
    has (so the same rows fit every revision)."""
    incident_id = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(hours=1)
    await conn.execute(
        """
        INSERT INTO incidents (id, customer_id, channel, message, email, phone, classification,
            confidence, sentiment, polarity, ticket_id, ticket_fallback, created_at, scored_at,
            classified_at, ticketed_at, acknowledged_at)
        VALUES ($1, 'cust-upgrade', 'sms', 'I was charged twice for my rent', 'a@b.co',
            '+14155550123', 'duplicate_payment', 0.93, 'negative', -0.6, 'TKT-00c0ffee', false,
            $2, $2, $2, $2, $2)
        """,
        incident_id,
        created,
    )
    await conn.execute(
        "INSERT INTO notifications (incident_id, channel, kind, recipient, message, status,"
        " attempts, sent_at) VALUES ($1, 'email', 'ack', 'a***@b.co', 'We got it', 'sent', 1,"
        " $2)",
        incident_id,
        created,
    )
    await conn.execute(
        "INSERT INTO reminders (incident_id, kind, due_at) VALUES ($1, 'follow_up', $2)",
        incident_id,
        created + timedelta(hours=24),
    )
    return incident_id


@pytest.mark.parametrize("revision", EARLIER)
async def test_incidents_stored_at_an_earlier_revision_survive_the_upgrade(
    empty_database: str, revision: str
) -> None:
    await migrate(empty_database, revision)
    conn = await asyncpg.connect(empty_database)
    try:
        incident_id = await an_incident_as_stored_then(conn)
    finally:
        await conn.close()

    await migrate(empty_database)

    pool = await create_pool(empty_database, 1)
    try:
        await read_and_change(pool, incident_id)
    finally:
        await pool.close()


async def read_and_change(pool: asyncpg.Pool, incident_id: uuid.UUID) -> None:
    """What the API and the operators' commands do with an incident, on the upgraded schema."""
    async with pool.acquire() as conn:
        state = await store.incident_details(conn, incident_id)
        assert state is not None
        assert (state["classification"], state["sentiment"], state["ticket_id"]) == (
            "duplicate_payment",
            "negative",
            "TKT-00c0ffee",
        )
        assert [n["status"] for n in state["notifications"]] == ["sent"]
        assert state["reminder"]["state"] == "scheduled"
        assert [m["body"] for m in state["messages"] if m["direction"] == "in"] == [
            "I was charged twice for my rent"
        ]
        # The current code's changes work on it: resolving, then erasing the customer.
        async with conn.transaction():
            assert await store.set_status(conn, incident_id, "resolved", "key:upgrade-test")
        assert await erase_customer(conn, "cust-upgrade", "upgrade-test") == [incident_id]
        assert await conn.fetchval("SELECT message FROM incidents WHERE id = $1", incident_id) == (
            ERASED
        )
