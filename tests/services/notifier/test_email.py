"""Acknowledgement and reminder emails: content, stable Message-ID, no header injection,
delivered over real SMTP to an aiosmtpd server on loopback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from incidentflow.mailbox import start_mailbox
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.compose import (
    IncidentView,
    channels_for,
    email_message,
    mask_email,
    mask_phone,
    text_message,
)
from tests.conftest import free_port

VIEW = IncidentView(
    incident_id=uuid.UUID("e5f7a2b1-4c8d-4e6f-8a9b-0c1d2e3f4a5b"),
    ticket_id="TKT-98042a72",
    message="My credit card payment was deducted twice yesterday.",
    email="customer@example.com",
    channel="email",
    created_at=datetime(2025, 11, 9, 10, 30, tzinfo=UTC),
)


def test_acknowledgement_follows_the_seed() -> None:
    mail = email_message(VIEW, "ack", "Support <support@company.com>", "support@company.com")
    assert mail["Subject"] == "Support Ticket #TKT-98042a72 - Issue Received"
    assert mail["To"] == "customer@example.com"
    body = mail.get_content()
    for line in (
        "Ticket ID: TKT-98042a72",
        "Incident Reference: e5f7a2b1-4c8d-4e6f-8a9b-0c1d2e3f4a5b",
        "Status: Open (Under Investigation)",
        "Received: November 09, 2025 at 10:30 AM UTC",
        "My credit card payment was deducted twice yesterday.",
        "You will receive an update within 24 hours",
    ):
        assert line in body


def test_message_id_is_the_same_for_a_resend_and_differs_by_kind() -> None:
    first = email_message(VIEW, "ack", "s@c.com", "s@c.com")["Message-ID"]
    again = email_message(VIEW, "ack", "s@c.com", "s@c.com")["Message-ID"]
    reminder = email_message(VIEW, "reminder", "s@c.com", "s@c.com")["Message-ID"]
    assert first == again != reminder


def test_crlf_in_a_ticket_id_cannot_add_headers() -> None:
    hostile = IncidentView(**{**VIEW.__dict__, "ticket_id": "T-1\r\nBcc: evil@example.com"})
    mail = email_message(hostile, "ack", "s@c.com", "s@c.com")
    raw = mail.as_bytes()
    assert b"\r\nBcc:" not in raw and b"\nBcc:" not in raw


def test_channels_and_masking() -> None:
    assert channels_for("email") == ["email", "sms"]
    assert channels_for("whatsapp") == ["email", "sms", "whatsapp"]
    assert mask_email("customer@example.com") == "c***@example.com"
    assert mask_phone("+14155550123") == "+14***23"
    assert "TKT-98042a72" in text_message(VIEW)


async def test_email_arrives_over_smtp(tmp_path: Path) -> None:
    port = free_port()
    controller = start_mailbox(tmp_path, port=port)
    try:
        mail = email_message(VIEW, "reminder", "Support <support@company.com>", "s@c.com")
        await SmtpMailer("127.0.0.1", port).send(mail)
    finally:
        controller.stop()
    [eml] = list(tmp_path.glob("*.eml"))
    received = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert received["Subject"] == "Support Ticket #TKT-98042a72 - Follow-up: Still Open"
    assert received["Message-ID"] == f"<{VIEW.incident_id}.reminder@incidentflow>"
    assert "still open" in received.get_content()
