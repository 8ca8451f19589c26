"""What an operator does to an incident's follow-ups, from the CLI (`incidentflow reminders`)
or the console: cancel them, or fire them now. Both audited, naming who did it."""

from __future__ import annotations

import uuid

import asyncpg

from contracts.events import ReminderDue
from incidentflow.messaging import make_broker, publish_delayed
from services.reminder import store
from services.reminder.store import Reminder


async def cancel(conn: asyncpg.Connection, incident_id: uuid.UUID, by: str) -> list[Reminder]:
    """The incident's pending follow-ups cancelled, in the caller's transaction."""
    cancelled = await store.cancel(conn, incident_id)
    await store.record_operator_action(conn, incident_id, "cancelled", cancelled, by)
    return cancelled


async def fire_now(
    conn: asyncpg.Connection, rabbitmq_url: str, incident_id: uuid.UUID, by: str
) -> list[Reminder]:
    """The incident's pending follow-ups due now, and handed to the reminder service at once
    (a delay of 0 through the delay exit), after the change is committed."""
    async with conn.transaction():
        due = await store.due_now(conn, incident_id)
        await store.record_operator_action(conn, incident_id, "fired-now", due, by)
    if not due:
        return due
    broker = make_broker(rabbitmq_url, prefetch=1)
    await broker.connect()
    try:
        for reminder in due:
            event = ReminderDue(
                incident_id=reminder.incident_id,
                reminder_id=reminder.id,
                kind=reminder.kind,
                due_at=reminder.due_at,
            )
            await publish_delayed(broker, event, 0)
    finally:
        await broker.stop()
    return due
