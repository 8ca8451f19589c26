"""The customer writing again restarts the follow-up's clock (store.restart_follow_up)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from contracts.events import IncidentMessageReceived
from services.reminder import store
from tests.services.incidents import stored_incident


def wrote_again(incident_id: uuid.UUID) -> IncidentMessageReceived:
    return IncidentMessageReceived(
        incident_id=incident_id,
        message_id=1,
        channel="email",
        message="Still nothing, please call me.",
        received_at=datetime.now(UTC),
    )


async def follow_up(pool: asyncpg.Pool, incident_id: uuid.UUID) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT due_at, state FROM reminders WHERE incident_id = $1 AND kind = $2",
            incident_id,
            store.FOLLOW_UP,
        )


async def with_follow_up(pool: asyncpg.Pool, state: str) -> uuid.UUID:
    incident = await stored_incident(pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO reminders (incident_id, kind, due_at, state) VALUES ($1, $2, $3, $4)",
            incident.incident_id,
            store.FOLLOW_UP,
            datetime.now(UTC) + timedelta(minutes=5),
            state,
        )
    return incident.incident_id


async def restart(pool: asyncpg.Pool, event: IncidentMessageReceived) -> datetime | None:
    due_at = event.received_at + timedelta(hours=24)
    async with pool.acquire() as conn:
        return await store.restart_follow_up(conn, "reminder", event, due_at)


async def test_a_scheduled_follow_up_moves_to_the_new_time(pool: asyncpg.Pool) -> None:
    incident_id = await with_follow_up(pool, "scheduled")
    event = wrote_again(incident_id)
    due_at = await restart(pool, event)
    assert due_at == event.received_at + timedelta(hours=24)
    assert (await follow_up(pool, incident_id))["due_at"] == due_at
    # The same event again (a redelivery) changes nothing.
    assert await restart(pool, event) is None


async def test_a_cancelled_follow_up_comes_back(pool: asyncpg.Pool) -> None:
    """Resolved (follow-ups cancelled), then reopened by the customer's message."""
    incident_id = await with_follow_up(pool, "cancelled")
    assert await restart(pool, wrote_again(incident_id)) is not None
    assert (await follow_up(pool, incident_id))["state"] == "scheduled"


async def test_a_follow_up_already_sent_stays_sent(pool: asyncpg.Pool) -> None:
    incident_id = await with_follow_up(pool, "sent")
    before = await follow_up(pool, incident_id)
    assert await restart(pool, wrote_again(incident_id)) is None
    assert await follow_up(pool, incident_id) == before


async def test_a_message_before_the_incident_was_ticketed_schedules_one(
    pool: asyncpg.Pool,
) -> None:
    incident = await stored_incident(pool)
    assert await follow_up(pool, incident.incident_id) is None
    assert await restart(pool, wrote_again(incident.incident_id)) is not None
    assert (await follow_up(pool, incident.incident_id))["state"] == "scheduled"
