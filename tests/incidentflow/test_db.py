"""Migrations run once and in order, concurrently safe; the audit trail is append-only."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from incidentflow.db import current_revision, head_revision, migrate
from incidentflow_tools.sandbox import drop_database

SEED_INCIDENT_COLUMNS = {
    "id",
    "customer_id",
    "channel",
    "message",
    "classification",
    "confidence",
    "sentiment",
    "polarity",
    "ticket_id",
    "status",
    "created_at",
    "resolved_at",
    "reminder_sent",
}
SEED_NOTIFICATION_COLUMNS = {"id", "incident_id", "channel", "message", "status", "sent_at"}


async def columns(pool: asyncpg.Pool, table: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
    )
    return {r["column_name"] for r in rows}


async def test_schema_has_the_seed_tables_and_columns(pool: asyncpg.Pool) -> None:
    assert await columns(pool, "incidents") >= SEED_INCIDENT_COLUMNS
    assert await columns(pool, "notifications") >= SEED_NOTIFICATION_COLUMNS
    assert {"incident_id", "kind", "due_at", "state", "attempts"} <= await columns(
        pool, "reminders"
    )
    assert {"service", "event_id", "payload", "recorded_at"} <= await columns(pool, "audit_events")


async def test_migrating_again_and_concurrently_changes_nothing(database_url: str) -> None:
    before = await current_revision(database_url)
    await asyncio.gather(*(migrate(database_url) for _ in range(4)))
    assert await current_revision(database_url) == before == head_revision() == "0017"


def test_six_processes_migrating_a_fresh_database_at_once_agree(database_url: str) -> None:
    """What happens when the six services start together on an empty database."""
    fresh = urlunsplit(urlsplit(database_url)._replace(path=f"/if_fresh_{uuid.uuid4().hex[:8]}"))
    env = {**os.environ, "DATABASE_URL": fresh}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "incidentflow_tools.cli", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
    try:
        assert [p.returncode for p in processes] == [0] * 6, outputs
        assert all(f"database at revision {head_revision()}" in out for out in outputs)
    finally:
        asyncio.run(drop_database(fresh))


async def test_audit_trail_cannot_be_rewritten(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO audit_events (service, event_name, event_id, incident_id, occurred_at, payload)
        VALUES ('t', 'e', gen_random_uuid(), gen_random_uuid(), now(), '{}')
        """
    )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE audit_events SET service = 'forged'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM audit_events")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("TRUNCATE audit_events")
    assert await pool.fetchval("SELECT count(*) FROM audit_events") >= 1


async def test_the_audit_trail_keeps_no_contact_details_or_text(pool: asyncpg.Pool) -> None:
    """Whatever writes the row, the payload loses email, phone, message and reason, and keeps
    the message's hash (migration 0013)."""
    payload = {
        "incident_id": "9b2f8c1e-0000-4000-8000-000000000001",
        "email": "ana@example.com",
        "phone": "+14155550123",
        "message": "charged twice",
        "reason": "charged, twice",
        "classification": "duplicate_payment",
    }
    stored = await pool.fetchval(
        """
        INSERT INTO audit_events (service, event_name, event_id, incident_id, occurred_at, payload)
        VALUES ('t', 'e', gen_random_uuid(), gen_random_uuid(), now(), $1) RETURNING payload
        """,
        payload,
    )
    assert stored == {
        "incident_id": payload["incident_id"],
        "classification": "duplicate_payment",
        "message_sha256": hashlib.sha256(b"charged twice").hexdigest(),
    }
