"""The notification step, pure: which channels, and what each message says."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from contracts.events import NotificationKind

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "html.j2"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

SUBJECTS: dict[NotificationKind, str] = {
    "ack": "Support Ticket #{ticket_id} - Issue Received",
    "reminder": "Support Ticket #{ticket_id} - Follow-up: Still Open",
    "escalation": "[Escalation] Ticket #{ticket_id} still open",
}


@dataclass(frozen=True)
class IncidentView:
    """What a customer-facing message may mention about an incident."""

    incident_id: uuid.UUID
    ticket_id: str
    message: str
    email: str
    channel: str
    created_at: datetime


def channels_for(channel: str) -> list[str]:
    """Email always (the seed's real channel), SMS as in the seed, WhatsApp when written from it."""
    channels = ["email", "sms"]
    if channel == "whatsapp":
        channels.append("whatsapp")
    return channels


def _context(view: IncidentView, support_address: str) -> dict[str, object]:
    return {
        "ticket_id": view.ticket_id,
        "incident_id": view.incident_id,
        "message": view.message,
        "received": view.created_at.strftime("%B %d, %Y at %I:%M %p UTC"),
        "support_address": support_address,
    }


def email_message(
    view: IncidentView,
    kind: NotificationKind,
    sender: str,
    support_address: str,
    to: str | None = None,
) -> EmailMessage:
    """The email of ``kind`` about ``view``; to the customer unless ``to`` says otherwise."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to or view.email
    mail["Subject"] = SUBJECTS[kind].format(ticket_id=_one_line(view.ticket_id))
    # Deterministic per (incident, kind): a resend is recognisably the same mail.
    mail["Message-ID"] = f"<{view.incident_id}.{kind}@incidentflow>"
    body = TEMPLATES.get_template(f"{kind}_email.txt.j2").render(_context(view, support_address))
    mail.set_content(body)
    return mail


def text_message(view: IncidentView) -> str:
    return TEMPLATES.get_template("ack_sms.txt.j2").render(ticket_id=view.ticket_id).strip()


def _one_line(value: str) -> str:
    # No header injection through a ticket id that a ticket system made up.
    return " ".join(value.split())


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(number: str | None) -> str | None:
    return None if not number else f"{number[:3]}***{number[-2:]}"
