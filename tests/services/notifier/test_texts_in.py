"""An incident that came in by text, without an address: answered and followed up by text,
never by email (the Twilio intake, services/ingest/intake/twilio.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from contracts.events import ReminderRequested
from services.notifier.compose import text_message
from services.notifier.notifications import IncidentView
from tests.e2e.conftest import insert_ticketed_incident, publish
from tests.fake_twilio import fake_twilio
from tests.services.notifier.conftest import Acknowledgements, Inbox, settings
from tests.services.notifier.test_delivery import PHONE, notifiers, rows, twilio_env


async def follow_up_due(database_url: str, incident_id: object) -> int:
    """The incident's phone on its row, and a follow-up the reminder service has claimed."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE incidents SET phone = $2 WHERE id = $1", incident_id, PHONE)
        return int(
            await conn.fetchval(
                "INSERT INTO reminders (incident_id, kind, due_at, state)"
                " VALUES ($1, 'follow_up', now(), 'requested') RETURNING id",
                incident_id,
            )
        )
    finally:
        await conn.close()


async def test_a_text_without_an_address_is_answered_and_followed_up_by_text(
    broker_url: str, database_url: str, inbox: Inbox, acknowledgements: Acknowledgements
) -> None:
    event = await insert_ticketed_incident(
        database_url, channel="sms", email="", phone=PHONE, classification="other"
    )
    reminder_id = await follow_up_due(database_url, event.incident_id)
    with fake_twilio() as twilio:
        config = settings(broker_url, database_url, inbox, **twilio_env(twilio))
        async with notifiers(1, config):
            await publish(broker_url, event)
            [acknowledged] = await acknowledgements.wait_for(1)
            await publish(
                broker_url,
                ReminderRequested(
                    incident_id=event.incident_id,
                    reminder_id=reminder_id,
                    kind="follow_up",
                    ticket_id=event.ticket_id,
                    email="",
                    message=event.message,
                    created_at=event.created_at,
                ),
            )
            deadline = time.monotonic() + 20
            while len(twilio.texts) < 2:
                assert time.monotonic() < deadline, "no follow-up text"
                await asyncio.sleep(0.05)
    assert acknowledged.channels == ["sms"]
    assert inbox.arrived == []
    ack, follow_up = twilio.texts
    assert ack.to == follow_up.to == PHONE
    assert ack.body.startswith(f"Ticket #{event.ticket_id} created.")
    assert follow_up.body.startswith(f"Ticket #{event.ticket_id}: your case is still open")
    found = await rows(database_url, event.incident_id)
    assert set(found) == {"sms/ack", "sms/reminder"}
    assert {r["status"] for r in found.values()} == {"sent"}


def test_the_follow_up_text_is_in_the_customers_language() -> None:
    view = IncidentView(
        incident_id=uuid.uuid4(),
        ticket_id="TKT-1",
        message="Me han cobrado dos veces",
        email="",
        channel="whatsapp",
        created_at=datetime.now(UTC),
        language="es",
    )
    assert text_message(view, "reminder") == (
        "Caso #TKT-1: su caso sigue abierto y nuestro equipo está trabajando en él. "
        "Responda a este mensaje si algo ha cambiado."
    )
    english = IncidentView(**{**view.__dict__, "language": "en"})
    assert text_message(english, "reminder").startswith("Ticket #TKT-1: your case is still open")
