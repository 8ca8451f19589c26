"""The limit per recipient holds across customers, API keys and notifier replicas, on the real
Postgres; texts go only to the countries allowed; acknowledgements quote no links."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from pydantic import ValidationError

from services.notifier import store
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts
from services.notifier.compose import email_message, excerpt
from services.notifier.notifications import ClaimRequest, IncidentView, Key, RecipientLimit
from services.notifier.notify import Notifier, recipient_key
from services.notifier.settings import NotifierSettings
from tests.e2e.conftest import insert_ticketed_incident
from tests.services.notifier.conftest import Inbox, smtp_server

LIMIT = RecipientLimit(amount=5, window_seconds=3600)


@pytest.mark.parametrize(
    "variant",
    [
        "Victim@Example.com",
        " victim@example.com ",
        "victim+1@example.com",
        "victim+promo@EXAMPLE.COM",
    ],
)
def test_variants_of_one_mailbox_count_as_one_recipient(variant: str) -> None:
    assert recipient_key(variant) == recipient_key("victim@example.com")


def test_providers_that_ignore_dots_count_them_as_one_recipient() -> None:
    assert recipient_key("v.i.c.t.i.m@gmail.com") == recipient_key("victim@gmail.com")
    assert recipient_key("v.ictim@example.com") != recipient_key("victim@example.com")


async def test_replicas_claiming_at_once_stay_within_the_limit(database_url: str) -> None:
    """Ten notifier connections claim a new notification to one address at the same moment:
    the recipient's lock lets five through, and records the other five suppressed."""
    key = recipient_key(f"victim-{uuid.uuid4().hex[:8]}@example.com")
    events = [await insert_ticketed_incident(database_url) for _ in range(10)]
    connections = [await asyncpg.connect(database_url) for _ in events]
    try:
        claims = await asyncio.gather(
            *(
                store.claim_many(
                    conn,
                    [
                        ClaimRequest(
                            Key(event.incident_id, "email", "ack"),
                            "v***@example.com",
                            "body",
                            60,
                            key,
                        )
                    ],
                    LIMIT,
                )
                for conn, event in zip(connections, events, strict=True)
            )
        )
        statuses = sorted(c.status for [c] in claims)
        assert statuses == ["sending"] * 5 + ["suppressed"] * 5
        assert all(c.owned for [c] in claims if c.status == "sending")
        recorded = await connections[0].fetch(
            "SELECT status, last_error FROM notifications WHERE recipient_key = $1", key
        )
    finally:
        for conn in connections:
            await conn.close()
    assert sorted(r["status"] for r in recorded) == statuses
    assert {r["last_error"] for r in recorded if r["status"] == "suppressed"} == {LIMIT.reason}


async def test_a_retry_of_a_notification_already_counted_is_not_suppressed(
    database_url: str,
) -> None:
    key = recipient_key(f"busy-{uuid.uuid4().hex[:8]}@example.com")
    events = [await insert_ticketed_incident(database_url) for _ in range(5)]
    conn = await asyncpg.connect(database_url)
    try:

        def ask(event_index: int) -> ClaimRequest:
            notification = Key(events[event_index].incident_id, "email", "ack")
            return ClaimRequest(notification, None, "body", 60, key)

        first = await store.claim_many(conn, [ask(i) for i in range(5)], LIMIT)
        assert [c.status for c in first] == ["sending"] * 5
        lease = first[0].lease
        assert lease is not None
        # The first send failed and went back to queued; its retry takes its own place.
        await store.record_failure(conn, ask(0).key, lease, "timeout", retryable=True, final=False)
        [retry] = await store.claim_many(conn, [ask(0)], LIMIT)
        assert retry.status == "sending" and retry.owned
    finally:
        await conn.close()


async def test_texts_go_only_to_the_allowed_countries(
    database_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_SMS_COUNTRIES", "US,GB")
    settings = NotifierSettings()
    event = await insert_ticketed_incident(database_url)
    view = IncidentView(event.incident_id, "T-1", "help", "a@example.com", "sms", event.created_at)
    with smtp_server(Inbox()) as inbox:
        notifier = Notifier(
            lambda: pool, SmtpMailer("127.0.0.1", inbox.port), LoggedTexts(), settings
        )
        # A number abroad: held back before any provider is called.
        assert await notifier.send_text(view, "sms", "+37060012345", final=False) == "suppressed"
        assert await notifier.send_text(view, "whatsapp", "+14155550123", final=False) == "logged"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT channel, status, last_error FROM notifications WHERE incident_id = $1",
            event.incident_id,
        )
    found = {r["channel"]: (r["status"], r["last_error"]) for r in rows}
    assert found["sms"][0] == "suppressed" and "LT" in found["sms"][1]
    assert found["whatsapp"] == ("logged", None)


def test_production_with_twilio_needs_the_allowed_countries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "ENV": "production",
        "RABBITMQ_URL": "amqp://notifier:Xk3-long-secret@rabbit:5672/",
        "DATABASE_URL": "postgresql://notifier:Pg-long-secret@db:5432/incidentflow",
        "TWILIO_ACCOUNT_SID": "AC123",
        "TWILIO_AUTH_TOKEN": "token",
        "TWILIO_FROM_NUMBER": "+14155550100",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="NOTIFIER_SMS_COUNTRIES"):
        NotifierSettings()
    monkeypatch.setenv("NOTIFIER_SMS_COUNTRIES", "us")
    assert NotifierSettings().sms_countries == ["US"]


@pytest.mark.parametrize(
    ("hostile", "host"),
    [
        ("verify at http://evil.example/login now", "evil"),
        ("verify at HTTPS://EVIL.EXAMPLE/login now", "evil"),
        ("verify at evil.example/login now", "evil"),
        ("verify at www.evil.example now", "evil"),
        ("write to attacker@evil.example now", "evil"),
        ("verify at hxxp://evil.example now", "evil"),
        ("verify at exämple.com/login now", "exämple"),
        ("verify at \u0430pple.com/login now", "pple"),  # a Cyrillic a (U+0430)
        ("verify at 192.168.1.10/login now", "192.168"),
        ("verify at evil\u3002com/login now", "evil"),  # an ideographic full stop
        ("verify at \uff45\uff56\uff49\uff4c\uff0e\uff43\uff4f\uff4d now", "evil"),  # fullwidth
        ("verify at evil\u200b.com/login now", "evil"),  # a zero-width space
        ("verify at x_evil.com/login now", "evil"),
        ("verify at evil[.]com/login now", "evil"),
        ("write to user\uff20evil\u3002com now", "evil"),  # fullwidth @
    ],
)
def test_an_excerpt_carries_no_link_or_address(hostile: str, host: str) -> None:
    quoted = excerpt(hostile)
    assert host not in quoted.lower() and "now" in quoted


def test_an_excerpt_keeps_ordinary_prose_and_amounts() -> None:
    text = "I paid 3.50 twice for order 12345, please refund!"
    assert excerpt(text) == text


def test_an_excerpt_is_short_and_one_line() -> None:
    quoted = excerpt("charged twice\r\nBcc: x\r\n" + "a" * 1000)
    assert len(quoted) <= 160 and "\n" not in quoted and "\r" not in quoted


@pytest.mark.parametrize("quote", [False, True])
def test_an_acknowledgement_quotes_at_most_an_excerpt(quote: bool) -> None:
    message = "I was charged twice, see http://evil.example/login " + "x" * 400
    view = IncidentView(uuid.uuid4(), "T-1", message, "a@example.com", "email", _now())
    mail = email_message(view, "ack", "support@company.com", "support@company.com", quote=quote)
    for part in mail.mail.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            body = payload.decode()
            assert "evil.example" not in body and "x" * 200 not in body
            assert ("I was charged twice" in body) is quote


def test_the_support_team_reads_the_whole_message() -> None:
    message = "I was charged twice, see http://evil.example/login"
    view = IncidentView(uuid.uuid4(), "T-1", message, "a@example.com", "email", _now())
    mail = email_message(view, "escalation", "s@company.com", "s@company.com", to="t@company.com")
    assert message in mail.text


def _now() -> datetime:
    return datetime.now(UTC)
