"""An upgrade with messages in flight (docs/operations.md, "Upgrading with migrations"): events
the old release published wait in the queues while the database goes from the first revision
to the newest; the new services then finish every incident, and nothing is lost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory

from contracts.events import IncidentReceived
from incidentflow.db import alembic_config, ensure_database, migrate
from incidentflow.messaging import declare_all
from incidentflow_tools.sandbox import drop_database
from tests.e2e.conftest import (
    insert_incident_row,
    insert_ticketed_incident,
    publish,
    read_inbox,
    running_stack,
)

FIRST_REVISION = list(
    ScriptDirectory.from_config(alembic_config("postgresql://x/y")).walk_revisions()
)[-1].revision


async def received_as_stored_then(database_url: str) -> IncidentReceived:
    """An incident ingest stored at the first revision, its incident.received not yet taken."""
    event = IncidentReceived(
        incident_id=uuid.uuid4(),
        customer_id="upgrade-1",
        channel="email",
        message="I was charged twice for the same order and nobody answers",
        email="first@example.com",
        created_at=datetime.now(UTC),
    )
    await insert_incident_row(database_url, event)
    return event


async def acknowledged(database_url: str, ids: list[uuid.UUID]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM incidents"
                " WHERE id = ANY($1::uuid[]) AND acknowledged_at IS NOT NULL",
                ids,
            )
        )
    finally:
        await conn.close()


async def follow_ups(database_url: str, ids: list[uuid.UUID]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM reminders WHERE incident_id = ANY($1::uuid[])"
                " AND kind = 'follow_up'",
                ids,
            )
        )
    finally:
        await conn.close()


async def test_events_waiting_through_the_upgrade_are_finished_by_the_new_services(
    isolated_rabbitmq_url: str, database_url: str, tmp_path: Path
) -> None:
    name = f"incidentflow_inflight_{uuid.uuid4().hex[:8]}"
    upgraded = database_url.rsplit("/", 1)[0] + f"/{name}"
    await ensure_database(upgraded)
    try:
        await upgrade_with_events_waiting(isolated_rabbitmq_url, upgraded, tmp_path)
    finally:
        await drop_database(upgraded)


async def upgrade_with_events_waiting(rabbitmq_url: str, upgraded: str, tmp_path: Path) -> None:
    await migrate(upgraded, FIRST_REVISION)
    # The old release's state: its topology, an incident just received and one just ticketed,
    # each event waiting in its queue while the old services are gone.
    await declare_all(rabbitmq_url)
    received = await received_as_stored_then(upgraded)
    ticketed = await insert_ticketed_incident(
        upgraded, customer_id="upgrade-2", email="second@example.com"
    )
    await publish(rabbitmq_url, received, ticketed)

    await migrate(upgraded)  # migrations first, then the new services
    ids = [received.incident_id, ticketed.incident_id]
    env = {"RABBITMQ_URL": rabbitmq_url, "DATABASE_URL": upgraded}
    with running_stack(tmp_path, env) as stack:
        deadline = asyncio.get_running_loop().time() + 60
        while await acknowledged(upgraded, ids) < 2 or await follow_ups(upgraded, ids) < 2:
            assert asyncio.get_running_loop().time() < deadline, "an incident was not finished"
            await asyncio.sleep(0.2)
        recipients = sorted(str(mail["To"]) for mail in read_inbox(stack.mail_dir))
    assert recipients == ["first@example.com", "second@example.com"]
