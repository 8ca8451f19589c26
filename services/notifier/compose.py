"""The notification step, pure: which channels, and what each message says."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from contracts.events import Category, NotificationKind

# The Environment caches compiled templates: each is parsed once per process.
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

# Email always goes out (the seed's real channel); a text channel only when the customer
# wrote from it or a rule asks for it. Chat has no channel of its own to answer on.
TEXT_CHANNELS = ("sms", "whatsapp")


@dataclass(frozen=True)
class IncidentView:
    """What a customer-facing message may mention about an incident."""

    incident_id: uuid.UUID
    ticket_id: str
    message: str
    email: str
    channel: str
    created_at: datetime


@dataclass(frozen=True)
class Email:
    """An email ready to send: the message, its envelope, and the text kept on record."""

    mail: EmailMessage
    sender: str
    recipient: str
    text: str


def channels_for(
    channel: str, category: Category | None, rules: Mapping[Category, Sequence[str]]
) -> list[str]:
    """Email, the customer's own text channel, and whatever the category's rule adds."""
    wanted = {"email", channel, *(rules.get(category, ()) if category else ())}
    return ["email", *(c for c in TEXT_CHANNELS if c in wanted)]


def _context(view: IncidentView, support_address: str) -> dict[str, object]:
    return {
        "ticket_id": one_line(view.ticket_id),
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
) -> Email:
    """The email of ``kind`` about ``view``; to the customer unless ``to`` says otherwise.

    ValueError when the sender or recipient is not one well-formed address.
    """
    from_address = parse_address(sender)
    to_address = parse_address(to or view.email)
    mail = EmailMessage()
    mail["From"] = from_address
    mail["To"] = to_address
    mail["Subject"] = SUBJECTS[kind].format(ticket_id=one_line(view.ticket_id))
    # Deterministic per (incident, kind): a resend is recognisably the same mail.
    mail["Message-ID"] = f"<{view.incident_id}.{kind}@incidentflow>"
    context = _context(view, support_address)
    text = TEMPLATES.get_template(f"{kind}_email.txt.j2").render(context)
    mail.set_content(text)
    mail.add_alternative(
        TEMPLATES.get_template(f"{kind}_email.html.j2").render(context), subtype="html"
    )
    return Email(mail, from_address.addr_spec, to_address.addr_spec, text)


def text_message(view: IncidentView) -> str:
    return (
        TEMPLATES.get_template("ack_sms.txt.j2").render(ticket_id=one_line(view.ticket_id)).strip()
    )


def one_line(value: str) -> str:
    """``value`` with every run of whitespace (CR and LF included) as one space: a header
    value built from it cannot start a header of its own."""
    return " ".join(value.split())


def parse_address(value: str) -> Address:
    """Exactly one address (display name allowed), or ValueError."""
    header = policy.default.header_factory("To", one_line(value))
    addresses = header.addresses
    if header.defects or len(addresses) != 1 or not addresses[0].domain:
        raise ValueError("not one well-formed email address")
    address: Address = addresses[0]
    return address
