"""Exactly once under redelivery and concurrency: the notifier app against a real RabbitMQ and
Postgres, with an SMTP server and a fake Twilio on loopback counting what arrived."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from email.message import Message
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from faststream import TestApp

from contracts.events import IncidentTicketed
from contracts.topology import DELIVERY_LIMIT, EVENTS
from incidentflow.messaging import RETRIES_HEADER, is_last_delivery
from incidentflow_tools.sandbox import free_port
from services.notifier import store
from services.notifier.adapters.base import Delivery, Handover
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts
from services.notifier.app import create_app
from services.notifier.notifications import Claim, IncidentView, Key
from services.notifier.notify import NotificationBusy, Notifier, SendFailed
from services.notifier.settings import NotifierSettings
from tests.e2e.conftest import insert_ticketed_incident, publish
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, fake_twilio
from tests.fakes import Answer
from tests.services.notifier.conftest import Acknowledgements, Inbox, settings, smtp_server

PHONE = "+14155550123"


def twilio_env(twilio: FakeTwilio) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": "+14155550100",
        "TWILIO_BASE_URL": twilio.url,
    }


@asynccontextmanager
async def notifiers(count: int, config: NotifierSettings) -> AsyncIterator[None]:
    """``count`` notifier apps consuming the same queues, as separate replicas would."""
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(TestApp(create_app(config)))
        yield


async def rows(database_url: str, incident_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetch(
            "SELECT * FROM notifications WHERE incident_id = $1 ORDER BY channel, kind",
            incident_id,
        )
    finally:
        await conn.close()
    return {f"{r['channel']}/{r['kind']}": dict(r) for r in found}


async def fraud_report(database_url: str, **fields: Any) -> IncidentTicketed:
    """A fraud report written by email: the default rules add an SMS."""
    return await insert_ticketed_incident(
        database_url, **{"classification": "fraud_report", "phone": PHONE, **fields}
    )


async def test_the_same_event_twice_sends_one_email_and_one_sms(
    broker_url: str, database_url: str, inbox: Inbox, acknowledgements: Acknowledgements
) -> None:
    event = await fraud_report(database_url)
    with fake_twilio() as twilio:
        config = settings(broker_url, database_url, inbox, **twilio_env(twilio))
        async with notifiers(1, config):
            await publish(broker_url, event)
            await acknowledgements.wait_for(1)
            await publish(broker_url, event)
            seen = await acknowledgements.wait_for(2)
    assert len(inbox.arrived) == 1 and inbox.arrived[0].rcpt_tos == ["customer@example.com"]
    [text] = twilio.texts
    assert (text.to, text.sender) == (PHONE, "+14155550100")
    assert text.body.startswith(f"Ticket #{event.ticket_id} created.")
    found = await rows(database_url, event.incident_id)
    assert found["email/ack"]["status"] == "sent" and found["email/ack"]["attempts"] == 1
    assert found["sms/ack"]["status"] == "sent" and found["sms/ack"]["attempts"] == 1
    assert found["sms/ack"]["provider_message_id"] == text.sid
    assert found["sms/ack"]["recipient"] == "+14***23"
    assert found["email/ack"]["provider_message_id"].endswith("TESTQUEUEID")
    assert [s.channels for s in seen] == [["email", "sms"], ["email", "sms"]]


async def test_the_same_event_to_two_replicas_at_once_sends_once(
    broker_url: str, database_url: str, acknowledgements: Acknowledgements
) -> None:
    """Both replicas get a copy at the same moment; the slow SMTP server keeps the first
    one's claim live while the second tries, which must wait and then skip."""
    event = await fraud_report(database_url)
    with fake_twilio() as twilio, smtp_server(Inbox(delay=1.0)) as inbox:
        twilio.delay = 0.5
        config = settings(broker_url, database_url, inbox, **twilio_env(twilio))
        async with notifiers(2, config):
            await publish(broker_url, event, event)
            await acknowledgements.wait_for(2, timeout=60)
    assert len(inbox.arrived) == 1
    assert len(twilio.texts) == 1 and twilio.requests == 1
    found = await rows(database_url, event.incident_id)
    assert {k: (r["status"], r["attempts"]) for k, r in found.items()} == {
        "email/ack": ("sent", 1),
        "sms/ack": ("sent", 1),
    }


async def test_a_temporary_smtp_failure_is_retried_by_redelivery(
    broker_url: str, database_url: str, acknowledgements: Acknowledgements
) -> None:
    event = await insert_ticketed_incident(database_url)
    with smtp_server(Inbox(refusals=["451 4.3.0 try again later"])) as inbox:
        async with notifiers(1, settings(broker_url, database_url, inbox)):
            await publish(broker_url, event)
            [ack] = await acknowledgements.wait_for(1)
    assert len(inbox.arrived) == 1 and ack.channels == ["email"]
    email = (await rows(database_url, event.incident_id))["email/ack"]
    assert (email["status"], email["attempts"], email["last_error"]) == ("sent", 2, None)


async def test_bad_or_missing_phone_fails_that_channel_without_a_send_or_retry(
    broker_url: str, database_url: str, inbox: Inbox, acknowledgements: Acknowledgements
) -> None:
    invalid = await insert_ticketed_incident(database_url, channel="sms", phone="+1555")
    missing = await fraud_report(database_url, phone=None)
    with fake_twilio() as twilio:
        config = settings(broker_url, database_url, inbox, **twilio_env(twilio))
        async with notifiers(1, config):
            await publish(broker_url, invalid, missing)
            seen = list(await acknowledgements.wait_for(2))
            await publish(broker_url, invalid)  # a redelivery changes nothing
            await acknowledgements.wait_for(3)
    assert twilio.requests == 0 and len(inbox.arrived) == 2
    assert [s.channels for s in seen] == [["email"], ["email"]]
    for event, reason in ((invalid, "invalid phone number"), (missing, "no phone number")):
        sms = (await rows(database_url, event.incident_id))["sms/ack"]
        assert (sms["status"], sms["retryable"], sms["attempts"]) == ("failed", False, 0)
        assert sms["last_error"].startswith(reason)


async def test_twilio_refusing_the_number_fails_the_sms_and_is_not_retried(
    broker_url: str, database_url: str, inbox: Inbox, acknowledgements: Acknowledgements
) -> None:
    event = await insert_ticketed_incident(database_url, channel="whatsapp", phone=PHONE)
    with fake_twilio() as twilio:
        twilio.fail_next(Answer(400, {"code": 63003, "message": "Channel could not find To"}))
        config = settings(broker_url, database_url, inbox, **twilio_env(twilio))
        async with notifiers(1, config):
            await publish(broker_url, event)
            [ack] = await acknowledgements.wait_for(1)
            await publish(broker_url, event)
            await acknowledgements.wait_for(2)
    assert twilio.requests == 1 and ack.channels == ["email"]
    whatsapp = (await rows(database_url, event.incident_id))["whatsapp/ack"]
    assert (whatsapp["status"], whatsapp["retryable"]) == ("failed", False)
    assert "63003" in whatsapp["last_error"]


async def test_without_twilio_texts_are_logged(
    broker_url: str, database_url: str, inbox: Inbox, acknowledgements: Acknowledgements
) -> None:
    event = await insert_ticketed_incident(database_url, channel="whatsapp", phone=PHONE)
    async with notifiers(1, settings(broker_url, database_url, inbox)):
        await publish(broker_url, event)
        [ack] = await acknowledgements.wait_for(1)
    whatsapp = (await rows(database_url, event.incident_id))["whatsapp/ack"]
    assert (whatsapp["status"], whatsapp["provider_message_id"]) == ("logged", None)
    assert whatsapp["sent_at"] is not None and ack.channels == ["email", "whatsapp"]


async def test_channel_rules_come_from_json_settings(
    broker_url: str,
    database_url: str,
    inbox: Inbox,
    acknowledgements: Acknowledgements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = await insert_ticketed_incident(database_url, classification="account_locked")
    rules = {"account_locked": ["whatsapp"], "fraud_report": []}
    monkeypatch.setenv("NOTIFIER_CHANNEL_RULES", json.dumps(rules))
    config = settings(broker_url, database_url, inbox)
    assert config.channel_rules == rules
    async with notifiers(1, config):
        await publish(broker_url, event)
        [ack] = await acknowledgements.wait_for(1)
    assert ack.channels == ["email"]  # whatsapp was wanted, but the incident has no phone
    assert set(await rows(database_url, event.incident_id)) == {"email/ack", "whatsapp/ack"}


def view_of(event: IncidentTicketed) -> IncidentView:
    return IncidentView(
        event.incident_id, event.ticket_id, event.message, event.email, "email", event.created_at
    )


async def test_the_last_delivery_leaves_the_row_failed_not_queued(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Each failure before the last leaves the row queued for the redelivery; the last
    (x-delivery-count == DELIVERY_LIMIT) leaves it failed, and it stays retryable so a
    replay from the dead-letter queue still sends it."""
    event = await insert_ticketed_incident(database_url)
    nobody = SmtpMailer("127.0.0.1", free_port(), timeout=2)
    config = NotifierSettings()
    notifier = Notifier(lambda: pool, nobody, LoggedTexts(), config)
    view = view_of(event)
    with pytest.raises(SendFailed) as failed:
        await notifier.send_email(view, "ack", final=False)
    assert isinstance(failed.value.__cause__, OSError)
    email = (await rows(database_url, event.incident_id))["email/ack"]
    assert (email["status"], email["attempts"]) == ("queued", 1) and email["last_error"]
    with pytest.raises(SendFailed):
        await notifier.send_email(view, "ack", final=True)
    email = (await rows(database_url, event.incident_id))["email/ack"]
    assert (email["status"], email["attempts"], email["retryable"]) == ("failed", 2, True)
    assert "Connect" in email["last_error"] and email["lease_until"] is None
    with smtp_server(Inbox()) as inbox:
        replayed = Notifier(
            lambda: pool, SmtpMailer("127.0.0.1", inbox.port), LoggedTexts(), config
        )
        assert await replayed.send_email(view, "ack", final=False) == "sent"
    assert len(inbox.arrived) == 1


def test_the_last_delivery_is_the_one_counting_the_limit() -> None:
    # Measured on RabbitMQ 3.10 with x-delivery-limit=2: deliveries carry counts 0, 1, 2,
    # then the message is dead-lettered.
    assert not is_last_delivery(None)
    assert not is_last_delivery({"x-delivery-count": DELIVERY_LIMIT - 1})
    assert is_last_delivery({"x-delivery-count": DELIVERY_LIMIT})


async def test_the_handler_sends_as_final_on_its_message_s_last_try(
    broker_url: str, database_url: str
) -> None:
    """The app, not the Notifier alone: a message on its last try (its retries header at the
    limit) whose send fails leaves the row failed, as the delivery policy dead-letters it."""
    event = await insert_ticketed_incident(database_url)
    # No SMTP server on its port: every send fails.
    config = settings(broker_url, database_url, Inbox(), SMTP_PORT=str(free_port()))
    async with notifiers(1, config):
        connection = await aio_pika.connect(broker_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EVENTS.name)
            await exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    headers={RETRIES_HEADER: DELIVERY_LIMIT},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=event.routing_key(),
            )
        deadline = time.monotonic() + 20
        # Until the failed send is recorded: the claim shows the row with a lease first.
        while (email := (await rows(database_url, event.incident_id)).get("email/ack")) is None or (
            email["lease_until"] is not None
        ):
            assert time.monotonic() < deadline, "the failed send was never recorded"
            await asyncio.sleep(0.1)
    assert (email["status"], email["attempts"], email["retryable"]) == ("failed", 1, True)


async def test_a_claim_is_exclusive_until_its_lease_expires(
    pool: asyncpg.Pool, database_url: str
) -> None:
    event = await insert_ticketed_incident(database_url)
    key = Key(event.incident_id, "email", "ack")

    async def claim() -> Claim:
        async with pool.acquire() as conn:
            return await store.claim(conn, key, "c***@example.com", "body", 60)

    claims = await asyncio.gather(*(claim() for _ in range(8)))
    owners = [c for c in claims if c.owned]
    assert len(owners) == 1 and {c.status for c in claims if not c.owned} == {"sending"}
    first = owners[0]
    assert first.lease is not None
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE notifications SET lease_until = now() - interval '1 second' "
            "WHERE incident_id = $1",
            event.incident_id,
        )
        second = await store.claim(conn, key, None, "body", 60)
        assert second.owned and second.lease != first.lease
        # The first holder's lease is gone: its late failure must not undo the new claim.
        await store.record_failure(conn, key, first.lease, "late", retryable=True, final=True)
        assert (await claim()).status == "sending"
        await store.record_delivered_many(conn, [(key, "sent", "250 ok")])
    done = await claim()
    assert (done.owned, done.status) == (False, "sent")
    assert (await rows(database_url, event.incident_id))["email/ack"]["attempts"] == 2


async def test_a_live_claim_elsewhere_makes_this_delivery_retry_later(
    pool: asyncpg.Pool, database_url: str
) -> None:
    event = await insert_ticketed_incident(database_url)
    async with pool.acquire() as conn:
        held = await store.claim(conn, Key(event.incident_id, "email", "ack"), None, "", 60)
    assert held.owned
    with smtp_server(Inbox()) as inbox:
        notifier = Notifier(
            lambda: pool, SmtpMailer("127.0.0.1", inbox.port), LoggedTexts(), NotifierSettings()
        )
        with pytest.raises(NotificationBusy):
            await notifier.send_email(view_of(event), "ack", final=False)
    assert inbox.arrived == []


class _StallsAtQuit(SMTP):
    async def smtp_QUIT(self, arg: str) -> None:
        await asyncio.sleep(3600)  # takes the mail, then never answers QUIT


class _StallingController(Controller):
    def factory(self) -> SMTP:
        return _StallsAtQuit(self.handler, **self.SMTP_kwargs)


async def test_a_server_stalling_at_quit_does_not_fail_a_delivered_mail(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """After the 250 the mail is the server's: a QUIT that never completes must not turn it
    into a failure, or the redelivery would send it a second time."""
    event = await insert_ticketed_incident(database_url)
    inbox = Inbox()
    inbox.port = free_port()
    controller = _StallingController(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        notifier = Notifier(
            lambda: pool,
            SmtpMailer("127.0.0.1", inbox.port, timeout=1),
            LoggedTexts(),
            NotifierSettings(),
        )
        status = await asyncio.wait_for(
            notifier.send_email(view_of(event), "ack", final=False), timeout=5
        )
    finally:
        controller.stop()
    assert status == "sent" and len(inbox.arrived) == 1
    assert (await rows(database_url, event.incident_id))["email/ack"]["status"] == "sent"


class _SlowToReturn:
    """The real SMTP send, then a pause before returning: a handler cancelled in that pause
    has already had its mail accepted."""

    def __init__(self, mailer: SmtpMailer) -> None:
        self.mailer = mailer
        self.accepted = asyncio.Event()

    async def send(
        self,
        mail: Message | bytes,
        sender: str,
        recipient: str,
        *,
        handover: Handover | None = None,
    ) -> Delivery:
        delivery = await self.mailer.send(mail, sender, recipient, handover=handover)
        self.accepted.set()
        await asyncio.sleep(0.5)
        return delivery


async def test_a_handler_cancelled_after_the_send_still_records_it(
    pool: asyncpg.Pool, database_url: str
) -> None:
    event = await insert_ticketed_incident(database_url)
    with smtp_server(Inbox()) as inbox:
        mailer = _SlowToReturn(SmtpMailer("127.0.0.1", inbox.port))
        notifier = Notifier(lambda: pool, mailer, LoggedTexts(), NotifierSettings())
        handler = asyncio.create_task(notifier.send_email(view_of(event), "ack", final=False))
        await asyncio.wait_for(mailer.accepted.wait(), timeout=5)
        handler.cancel()  # as a lost broker connection or a shutdown does
        with pytest.raises(asyncio.CancelledError):
            await handler
        deadline = time.monotonic() + 5
        while (await rows(database_url, event.incident_id))["email/ack"]["status"] != "sent":
            assert time.monotonic() < deadline, "the accepted mail was never recorded"
            await asyncio.sleep(0.1)
        # A redelivery now finds it sent and sends nothing.
        again = Notifier(
            lambda: pool, SmtpMailer("127.0.0.1", inbox.port), LoggedTexts(), NotifierSettings()
        )
        assert await again.send_email(view_of(event), "ack", final=False) == "sent"
    assert len(inbox.arrived) == 1


class _BrokenConnection:
    """A connection the server dropped in the middle of a statement: asyncpg reports that
    as an internal client error, not as a connection error (seen in a chaos run)."""

    async def execute(self, *args: object) -> str:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )


class _PoolLosingItsConnections:
    """A pool whose connection breaks while it is held (as in a Postgres restart)."""

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_BrokenConnection]:
        yield _BrokenConnection()


async def test_recording_a_sent_mail_outlasts_a_database_outage(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The database goes away between the provider's acceptance and our record (as in a
    Postgres restart): the record is retried, not abandoned to a lease that would expire."""
    event = await insert_ticketed_incident(database_url)
    outage = {"calls": 0}

    def flaky_pool() -> Any:
        outage["calls"] += 1
        # Call 1 claims. Call 2, the record's, gets a connection that breaks mid-statement;
        # call 3, the first retry of the record, finds the database still away.
        if outage["calls"] == 2:
            return _PoolLosingItsConnections()
        if outage["calls"] == 3:
            raise ConnectionRefusedError("database restarting")
        return pool

    with smtp_server(Inbox()) as inbox:
        notifier = Notifier(
            flaky_pool, SmtpMailer("127.0.0.1", inbox.port), LoggedTexts(), NotifierSettings()
        )
        assert await notifier.send_email(view_of(event), "ack", final=False) == "sent"
    assert outage["calls"] == 4 and len(inbox.arrived) == 1
    assert (await rows(database_url, event.incident_id))["email/ack"]["status"] == "sent"
