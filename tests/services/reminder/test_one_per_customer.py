"""A customer with several open incidents gets one follow-up at a time (docs/adr/0057)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from services.reminder import store
from tests.services.incidents import stored_incident

HOUR = 3600
# Reminders due this long ago are this file's alone: a claim up to then takes no other test's.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


async def due_reminder(
    pool: asyncpg.Pool,
    customer_id: str,
    kind: str,
    seconds_ago: float,
    *,
    since: datetime | None = None,
) -> uuid.UUID:
    incident = await stored_incident(pool, customer_id=customer_id)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO reminders (incident_id, kind, due_at) VALUES ($1, $2, $3)",
            incident.incident_id,
            kind,
            (since or datetime.now(UTC)) - timedelta(seconds=seconds_ago),
        )
    return incident.incident_id


async def claim_one(conn: asyncpg.Connection, reminder_id: int, gap: float = HOUR) -> str:
    """One tick's claim of one reminder, in the caller's transaction; its state."""
    [fired] = await store.claim_due(
        conn,
        "reminder",
        datetime.now(UTC),
        reminder_id=reminder_id,
        lease_seconds=None,
        limit=10,
        customer_gap_seconds=gap,
    )
    return fired.reminder.state


async def claim(pool: asyncpg.Pool, ids: list[uuid.UUID], gap: float) -> dict[uuid.UUID, str]:
    """Claims what is due among ``ids`` (one at a time, as a tick names a reminder); each
    incident's outcome as audited."""
    async with pool.acquire() as conn:
        reminder_ids = await conn.fetch(
            "SELECT id FROM reminders WHERE incident_id = ANY($1::uuid[]) ORDER BY due_at", ids
        )
        if len(reminder_ids) == len(ids):
            async with conn.transaction():
                for row in reminder_ids:
                    await claim_one(conn, row["id"], gap)
        rows = await conn.fetch(
            "SELECT incident_id, outcome FROM audit_events "
            "WHERE event_name = 'reminder.due' AND incident_id = ANY($1::uuid[])",
            ids,
        )
    return {row["incident_id"]: row["outcome"] for row in rows}


async def claim_all_due(pool: asyncpg.Pool, gap: float) -> dict[uuid.UUID, str]:
    """One claim takes everything due by LONG_AGO (as a sweep, or a tick's slot, takes
    several)."""
    async with pool.acquire() as conn, conn.transaction():
        fired = await store.claim_due(
            conn,
            "reminder",
            LONG_AGO,
            lease_seconds=None,
            limit=10_000,
            customer_gap_seconds=gap,
        )
    return {f.reminder.incident_id: f.reminder.state for f in fired}


async def test_the_first_follow_up_due_goes_out_and_the_others_are_skipped(
    pool: asyncpg.Pool,
) -> None:
    customer = f"one-{uuid.uuid4().hex[:8]}"
    first = await due_reminder(pool, customer, store.FOLLOW_UP, 3)
    second = await due_reminder(pool, customer, store.FOLLOW_UP, 2)
    third = await due_reminder(pool, customer, store.FOLLOW_UP, 1)
    escalation = await due_reminder(pool, customer, store.ESCALATION, 1)
    someone_else = await due_reminder(pool, f"other-{uuid.uuid4().hex[:8]}", store.FOLLOW_UP, 2)
    outcomes = await claim(pool, [first, second, third, escalation, someone_else], HOUR)
    assert outcomes == {
        first: "requested",
        second: "skipped: customer followed up",
        third: "skipped: customer followed up",
        escalation: "requested",  # the support team hears of each incident
        someone_else: "requested",
    }


async def test_follow_ups_due_together_in_one_claim_send_one(pool: asyncpg.Pool) -> None:
    customer = f"batch-{uuid.uuid4().hex[:8]}"
    ids = [
        await due_reminder(pool, customer, store.FOLLOW_UP, s, since=LONG_AGO) for s in (3, 2, 1)
    ]
    states = await claim_all_due(pool, HOUR)
    assert states == {ids[0]: "requested", ids[1]: "skipped", ids[2]: "skipped"}


async def test_after_the_gap_the_customer_is_followed_up_again(pool: asyncpg.Pool) -> None:
    customer = f"later-{uuid.uuid4().hex[:8]}"
    earlier = await due_reminder(pool, customer, store.FOLLOW_UP, 3)
    assert await claim(pool, [earlier], HOUR) == {earlier: "requested"}
    async with pool.acquire() as conn:  # that follow-up went out two hours ago
        await conn.execute(
            "UPDATE customer_follow_ups SET followed_up_at = now() - interval '2 hours' "
            "WHERE customer_id = $1",
            customer,
        )
    later = await due_reminder(pool, customer, store.FOLLOW_UP, 1)
    assert await claim(pool, [later], HOUR) == {later: "requested"}


async def test_with_the_gap_off_every_follow_up_goes_out(pool: asyncpg.Pool) -> None:
    customer = f"off-{uuid.uuid4().hex[:8]}"
    ids = [await due_reminder(pool, customer, store.FOLLOW_UP, s) for s in (2, 1)]
    assert await claim(pool, ids, 0) == {ids[0]: "requested", ids[1]: "requested"}


async def claim_follow_up(conn: asyncpg.Connection, reminder_id: int) -> str:
    """The same in a transaction of its own."""
    async with conn.transaction():
        return await claim_one(conn, reminder_id)


async def wait_until_blocked(pool: asyncpg.Pool, pid: int) -> None:
    """Until the backend ``pid`` waits for a lock (the customer's row)."""
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        async with pool.acquire() as conn:
            if await conn.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return
        await asyncio.sleep(0.02)
    raise AssertionError("the second claim never waited for the first")


async def test_two_claims_at_once_for_one_customer_send_one(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Ticks are handled concurrently: the second claim waits for the first to commit, then
    sees its follow-up."""
    customer = f"race-{uuid.uuid4().hex[:8]}"
    incidents = [await due_reminder(pool, customer, store.FOLLOW_UP, s) for s in (2, 1)]
    async with pool.acquire() as conn:
        first, second = [
            await conn.fetchval("SELECT id FROM reminders WHERE incident_id = $1", incident)
            for incident in incidents
        ]
    one = await asyncpg.connect(database_url)
    other = await asyncpg.connect(database_url)
    try:
        async with one.transaction():  # the first claim, not committed yet
            assert await claim_one(one, first) == "requested"
            racing = asyncio.create_task(claim_follow_up(other, second))
            await wait_until_blocked(pool, other.get_server_pid())
        assert await racing == "skipped"
    finally:
        await one.close()
        await other.close()


async def test_a_resolved_incident_due_first_does_not_take_the_customers_turn(
    pool: asyncpg.Pool,
) -> None:
    customer = f"resolved-{uuid.uuid4().hex[:8]}"
    resolved, still_open = [
        await due_reminder(pool, customer, store.FOLLOW_UP, s, since=LONG_AGO) for s in (2, 1)
    ]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = $1", resolved)
    states = await claim_all_due(pool, HOUR)
    assert states == {resolved: "skipped", still_open: "requested"}
