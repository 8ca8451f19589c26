"""Every event of a finished incident delivered again: no second ticket, no second message.

Finished means acknowledged, followed up and escalated (the session stack runs with short
delays). Each event the services handled is taken from the audit trail and published again,
twice, as a broker redelivery or a replay from a dead-letter queue would.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg

from contracts.events import Event, ReminderDue
from contracts.topology import WORK_ROUTES
from incidentflow.messaging import make_broker, publish_delayed
from incidentflow_tools.stack import Stack
from tests.e2e.conftest import audited_event, consumed_after, publish, read_inbox, submit


def event_classes(cls: type[Event] = Event) -> dict[str, type[Event]]:
    classes: dict[str, type[Event]] = {}
    for sub in cls.__subclasses__():
        classes[sub.name] = sub
        classes |= event_classes(sub)
    return classes


async def snapshot(conn: asyncpg.Connection, incident_id: uuid.UUID) -> dict[str, Any]:
    """Every external effect and its record, as the database has them."""
    return {
        "ticket": await conn.fetchrow(
            "SELECT ticket_id, ticket_fallback, acknowledged_at FROM incidents WHERE id = $1",
            incident_id,
        ),
        "local_tickets": await conn.fetchval(
            "SELECT count(*) FROM local_tickets WHERE incident_id = $1", incident_id
        ),
        "notifications": await conn.fetch(
            "SELECT channel, kind, status, attempts, provider_message_id, sent_at"
            " FROM notifications WHERE incident_id = $1 ORDER BY channel, kind",
            incident_id,
        ),
        "reminders": await conn.fetch(
            "SELECT kind, state, attempts FROM reminders WHERE incident_id = $1 ORDER BY kind",
            incident_id,
        ),
    }


async def publish_now_delayed(rabbitmq_url: str, *events: Event) -> None:
    broker = make_broker(rabbitmq_url, prefetch=1)
    await broker.connect()
    try:
        for event in events:
            await publish_delayed(broker, event, 0)
    finally:
        await broker.stop()


def mails_about(stack: Stack, incident_id: str) -> int:
    return sum(incident_id in str(mail["Message-ID"]) for mail in read_inbox(stack.mail_dir))


async def test_every_event_of_a_finished_run_again_sends_nothing_and_opens_no_ticket(
    stack: Stack, rabbitmq_url: str, database_url: str
) -> None:
    created = submit(stack, f"My card was charged twice for order {uuid.uuid4().hex[:8]}").json()
    incident_id = uuid.UUID(created["incident_id"])
    conn = await asyncpg.connect(database_url)
    try:

        def states() -> set[tuple[str, str]]:
            return {(r["kind"], r["state"]) for r in rows}

        rows: list[asyncpg.Record] = []

        async def finished() -> bool:
            nonlocal rows
            rows = await conn.fetch(
                "SELECT kind, state FROM reminders WHERE incident_id = $1", incident_id
            )
            return states() >= {("follow_up", "sent"), ("escalation", "sent")}

        deadline = time.monotonic() + 60
        while not await finished():
            assert time.monotonic() < deadline, f"not finished: {states()}"
            time.sleep(0.5)
        before = await snapshot(conn, incident_id)
        mails_before = mails_about(stack, str(incident_id))
        handled = await conn.fetch(
            "SELECT DISTINCT ON (event_id) event_name, payload FROM audit_events"
            " WHERE incident_id = $1",
            incident_id,
        )
        classes = event_classes()
        events = [
            await audited_event(conn, classes[r["event_name"]], r["payload"]) for r in handled
        ]
        names = {event.name for event in events}
        assert {"incident.received", "incident.scored", "incident.classified"} <= names
        assert {"incident.ticketed", "reminder.due", "reminder.requested"} <= names

        # A reminder.due travels through the delay exchanges; with no delay it arrives at once.
        due = [e for e in events if isinstance(e, ReminderDue)]
        again = [e for e in events * 2 if not isinstance(e, ReminderDue)]
        # Every work queue the events reach, and how many of them it gets: look again only
        # once each was handled.
        consumed = consumed_after(
            stack,
            {
                route: sum(
                    e.name == route.event.name and isinstance(e, ReminderDue) == route.delayed
                    for e in [*again, *due, *due]
                )
                for route in WORK_ROUTES
                if any(e.name == route.event.name for e in [*again, *due])
            },
            timeout=60,
        )
        await publish(rabbitmq_url, *again)
        await publish_now_delayed(rabbitmq_url, *due, *due)
        consumed()
        after = await snapshot(conn, incident_id)
    finally:
        await conn.close()
    assert before["local_tickets"] == 1
    assert after == before
    assert mails_about(stack, str(incident_id)) == mails_before == 3  # ack, follow-up, escalation
