"""The notifier takes a batch of incident.ticketed events whole; when a notification of one is
pending, the batch goes the event by event way, and nothing is sent twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from contracts.events import IncidentTicketed
from contracts.topology import NOTIFIER_TICKETED
from incidentflow.service import ServiceRuntime
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts
from services.notifier.handlers import register
from services.notifier.notify import Notifier
from tests.e2e.conftest import insert_ticketed_incident, publish
from tests.services.notifier.conftest import Acknowledgements, Inbox, settings, smtp_server
from tests.steps import note_whole_batches


@asynccontextmanager
async def notifier(
    broker_url: str, database_url: str, inbox: Inbox
) -> AsyncIterator[list[tuple[int, str]]]:
    """A notifier consuming; what it yields notes each whole-batch call's size and outcome."""
    config = settings(broker_url, database_url, inbox)
    runtime = ServiceRuntime("notifier", config)
    mailer = SmtpMailer("127.0.0.1", inbox.port)
    register(runtime, Notifier(lambda: runtime.pool, mailer, LoggedTexts(), config))
    outcomes = note_whole_batches(runtime, NOTIFIER_TICKETED)
    async with runtime.lifespan():
        await runtime.broker.start()
        try:
            yield outcomes
        finally:
            await runtime.broker.stop()
            await mailer.close()


async def three_incidents(database_url: str) -> list[IncidentTicketed]:
    return [
        await insert_ticketed_incident(
            database_url, email=f"customer{n}@example.com", customer_id=f"c-{uuid.uuid4()}"
        )
        for n in range(3)
    ]


async def attempts(
    database_url: str, events: list[IncidentTicketed]
) -> dict[uuid.UUID, tuple[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT n.incident_id, n.status, n.attempts, i.acknowledged_at IS NOT NULL AS acked"
            " FROM notifications n JOIN incidents i ON i.id = n.incident_id"
            " WHERE n.incident_id = ANY($1::uuid[]) AND n.channel = 'email'",
            [e.incident_id for e in events],
        )
    finally:
        await conn.close()
    assert all(row["acked"] for row in rows)
    assert len(rows) == len(events)
    return {row["incident_id"]: (row["status"], row["attempts"]) for row in rows}


async def test_a_batch_is_acknowledged_whole(
    broker_url: str, database_url: str, inbox: Inbox, acknowledgements: Acknowledgements
) -> None:
    events = await three_incidents(database_url)
    async with notifier(broker_url, database_url, inbox) as outcomes:
        await publish(broker_url, *events, batched=True)
        seen = await acknowledgements.wait_for(3)
    assert outcomes == [(3, "handled")]  # one call for the batch, not one per event
    assert sorted(a.incident_id for a in seen) == sorted(e.incident_id for e in events)
    assert sorted(m.rcpt_tos[0] for m in inbox.arrived) == [e.email for e in events]
    assert set((await attempts(database_url, events)).values()) == {("sent", 1)}


async def test_a_pending_notification_sends_the_batch_event_by_event_and_none_twice(
    broker_url: str, database_url: str, acknowledgements: Acknowledgements
) -> None:
    events = await three_incidents(database_url)
    # The first mail of the batch is refused for now: that incident's acknowledgement is
    # pending, so the whole call fails after the other two went out.
    with smtp_server(Inbox(refusals=["451 4.3.0 try again later"])) as inbox:
        async with notifier(broker_url, database_url, inbox) as outcomes:
            await publish(broker_url, *events, batched=True)
            seen = await acknowledgements.wait_for(3)
    assert outcomes == [(3, "NotificationsPending")]
    assert sorted(a.incident_id for a in seen) == sorted(e.incident_id for e in events)
    # Each customer got one mail: the event by event way skipped the two already sent.
    assert sorted(m.rcpt_tos[0] for m in inbox.arrived) == [e.email for e in events]
    tries = sorted((await attempts(database_url, events)).values())
    assert tries == [("sent", 1), ("sent", 1), ("sent", 2)]
