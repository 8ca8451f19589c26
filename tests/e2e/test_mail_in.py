"""A customer who writes by mail, end to end: the mail becomes an incident and is acknowledged,
the customer's reply joins the incident, and an auto-reply to the acknowledgement does
nothing. Sent with smtplib to the stack's SMTP intake, as a provider would forward it."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest

from incidentflow_tools.stack import Stack
from tests.e2e.conftest import incident, read_inbox, wait_until

MARIA = "maria@example.com"


def send(stack: Stack, mail: EmailMessage) -> None:
    assert stack.intake_smtp_port is not None
    with smtplib.SMTP("127.0.0.1", stack.intake_smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)  # raises unless every recipient was accepted


def mail_from(sender: str, body: str, subject: str, **headers: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Maria Lopez <{sender}>"
    mail["To"] = "support@company.com"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    for name, value in headers.items():
        mail[name] = value
    mail.set_content(body)
    return mail


def incidents_of(stack: Stack, customer_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        stack.url("ingest") + "/api/incidents", params={"customer_id": customer_id}, timeout=10
    )
    assert answer.status_code == 200
    return answer.json()["items"]  # type: ignore[no-any-return]


def mails_to(stack: Stack, address: str) -> list[EmailMessage]:
    return [m for m in read_inbox(stack.mail_dir) if m["To"] == address]


@pytest.fixture(scope="module")
def acknowledged(stack: Stack) -> tuple[dict[str, Any], EmailMessage]:
    """Maria's mail as an incident, and the acknowledgement she received."""
    send(
        stack,
        mail_from(MARIA, "You charged my card twice for the same hotel booking.", "Charged twice"),
    )
    wait_until(lambda: len(mails_to(stack, MARIA)) == 1, timeout=30)
    [item] = incidents_of(stack, MARIA)
    return item, mails_to(stack, MARIA)[0]


def test_a_mail_becomes_an_acknowledged_incident(
    stack: Stack, acknowledged: tuple[dict[str, Any], EmailMessage]
) -> None:
    item, ack = acknowledged
    state = incident(stack, item["incident_id"])
    assert state["channel"] == "email"
    assert state["classification"] == "duplicate_payment"
    assert ack["Message-ID"] == f"<{item['incident_id']}.ack@incidentflow>"


def test_a_reply_to_the_acknowledgement_joins_the_incident(
    stack: Stack, acknowledged: tuple[dict[str, Any], EmailMessage]
) -> None:
    item, ack = acknowledged
    reply = mail_from(
        MARIA,
        "Here is the booking number: HB-20931.\n\n> " + "We received your message",
        "Re: " + str(ack["Subject"]),
        **{"In-Reply-To": str(ack["Message-ID"]), "References": str(ack["Message-ID"])},
    )
    send(stack, reply)

    def customer_messages() -> list[dict[str, Any]]:
        state = incident(stack, item["incident_id"])
        return [m for m in state["messages"] if m["direction"] == "in"]

    wait_until(lambda: len(customer_messages()) == 2, timeout=10)
    assert customer_messages()[1]["body"] == "Here is the booking number: HB-20931."
    assert len(incidents_of(stack, MARIA)) == 1


def test_the_reply_is_scored_commented_on_the_ticket_and_restarts_the_follow_up(
    stack: Stack, acknowledged: tuple[dict[str, Any], EmailMessage], database_url: str
) -> None:
    """After the reply above: each step handled its incident.message_received."""
    item, _ = acknowledged

    def handled_by() -> set[str]:
        state = incident(stack, item["incident_id"])
        return {
            a["service"] for a in state["audit"] if a["event_name"] == "incident.message_received"
        }

    wait_until(lambda: handled_by() >= {"ingest", "sentiment", "ticketing", "reminder"}, 30)
    state = incident(stack, item["incident_id"])
    reply = [m for m in state["messages"] if m["direction"] == "in"][1]
    assert reply["language"] == "en" and reply["sentiment"] in ("neutral", "negative")
    assert state["sentiment_trend"] in ("steady", "improving", "worsening")
    comments = asyncio.run(ticket_comments(database_url, item["incident_id"]))
    assert comments == ["Here is the booking number: HB-20931."]


async def ticket_comments(database_url: str, incident_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT body FROM local_ticket_comments WHERE incident_id = $1 ORDER BY id",
            uuid.UUID(incident_id),
        )
    finally:
        await conn.close()
    return [r["body"] for r in rows]


def test_an_auto_reply_to_the_acknowledgement_does_nothing(
    stack: Stack, acknowledged: tuple[dict[str, Any], EmailMessage]
) -> None:
    """Maria's out-of-office answering our acknowledgement: not a message of hers."""
    item, ack = acknowledged
    before = incident(stack, item["incident_id"])
    auto = mail_from(
        MARIA,
        "I am out of the office until Monday.",
        "Automatic reply: " + str(ack["Subject"]),
        **{"Auto-Submitted": "auto-replied", "In-Reply-To": str(ack["Message-ID"])},
    )
    send(stack, auto)  # answered 250 only once its receipt is stored
    assert len(incidents_of(stack, MARIA)) == 1
    assert incident(stack, item["incident_id"])["messages"] == before["messages"]
    assert len(mails_to(stack, MARIA)) == 1
