"""The notification step, pure: which channels, and what each message says."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import charset, policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from contracts.events import Category, NotificationKind

# The Environment caches compiled templates: each is parsed once per process, and not
# checked for changes on disk (a stat per mail) since they only change with a deploy.
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "html.j2"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    auto_reload=False,
)

# Bodies as base64 UTF-8, safe for any text. Quoted-printable would keep them readable on the
# wire, but the email package encodes it in Python, a character at a time (the templates'
# rules are 9 bytes a character in it): base64 is binascii's C, and halves the CPU of
# building a mail (1.17 to 0.62 ms on session 11's VM; docs/decisions.md).
_UTF8 = charset.Charset("utf-8")
_UTF8.body_encoding = charset.BASE64

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

    mail: Message
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

    Built with the email package's compat32 classes: EmailMessage's header registry parses
    every header as it is set, which made composing cost ~1.8 ms a mail, the notifier's
    largest single cost. Nothing unparsed reaches a header: the addresses come from
    ``parse_address`` and every other value is one line; compat32's generator also refuses a
    value that would start a header of its own.
    """
    from_address = parse_address(sender)
    to_address = parse_address(to or view.email)
    context = _context(view, support_address)
    text = TEMPLATES.get_template(f"{kind}_email.txt.j2").render(context)
    html = TEMPLATES.get_template(f"{kind}_email.html.j2").render(context)
    subject = SUBJECTS[kind].format(ticket_id=one_line(view.ticket_id))
    # Deterministic per (incident, kind): a resend is recognisably the same mail.
    message_id = f"<{view.incident_id}.{kind}@incidentflow>"
    mail: Message
    if from_address.addr_spec.isascii() and to_address.addr_spec.isascii():
        # A boundary of our own: the generator would otherwise make one and compile a regex to
        # check the bodies for it, per mail. "=_" cannot occur in base64 text.
        mail = MIMEMultipart("alternative", boundary=f"=_{uuid.uuid4().hex}")
        # A Charset works here at run time (set_payload takes one); typeshed says str only.
        mail.attach(MIMEText(text, "plain", _UTF8))  # type: ignore[arg-type]
        mail.attach(MIMEText(html, "html", _UTF8))  # type: ignore[arg-type]
        # formataddr encodes a non-ASCII display name (RFC 2047), never the address.
        sender_header = formataddr((from_address.display_name, from_address.addr_spec))
        recipient_header = formataddr((to_address.display_name, to_address.addr_spec))
    else:
        # An internationalised address goes out as UTF-8 under SMTPUTF8, which only the
        # EmailMessage policies write (the slow path, for the rare address that needs it).
        utf8 = EmailMessage()
        utf8.set_content(text)
        utf8.add_alternative(html, subtype="html")
        # Its header registry parses the addresses back from their text.
        mail, sender_header, recipient_header = utf8, str(from_address), str(to_address)
    mail["From"] = sender_header
    mail["To"] = recipient_header
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    return Email(mail, from_address.addr_spec, to_address.addr_spec, text)


def text_message(view: IncidentView) -> str:
    return (
        TEMPLATES.get_template("ack_sms.txt.j2").render(ticket_id=one_line(view.ticket_id)).strip()
    )


def one_line(value: str) -> str:
    """``value`` with every run of whitespace (CR and LF included) as one space: a header
    value built from it cannot start a header of its own."""
    return " ".join(value.split())


# A bare address whose local part and domain are dot-atoms (RFC 5322 3.2.3; the domain
# also a host name): nothing in it for the full parser to decode, quote or complain about.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


@lru_cache(maxsize=256)
def parse_address(value: str) -> Address:
    """Exactly one address (display name allowed), or ValueError. Cached: the sender is the
    same on every mail, and the email package's parser takes ~0.3 ms an address, so a plain
    one (most customers') is taken apart by a pattern instead."""
    if plain := _PLAIN_ADDRESS.fullmatch(value):
        return Address(username=plain[1], domain=plain[2])
    header = policy.default.header_factory("To", one_line(value))
    addresses = header.addresses
    if header.defects or len(addresses) != 1 or not addresses[0].domain:
        raise ValueError("not one well-formed email address")
    address: Address = addresses[0]
    return address
