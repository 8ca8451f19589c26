"""The notification step, pure: which channels, and what each message says."""

from __future__ import annotations

import base64
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import charset, policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
from functools import lru_cache
from typing import NamedTuple

from contracts.events import Category, NotificationKind
from services.notifier.notifications import IncidentView
from services.notifier.translations import (
    ENGLISH,
    N_,
    gettext_in,
    received_at,
    supported,
    templates,
)

# Bodies as base64 UTF-8, safe for any text. Quoted-printable would keep them readable on the
# wire, but the email package encodes it in Python, a character at a time (the templates'
# rules are 9 bytes a character in it): base64 is binascii's C, and halves the CPU of
# building a mail (1.17 to 0.62 ms on one of the project's VMs;
# docs/adr/0041-the-notifier-writes-its-mails-itself.md).
_UTF8 = charset.Charset("utf-8")
_UTF8.body_encoding = charset.BASE64

SUBJECTS: dict[NotificationKind, str] = {
    "ack": N_("Support Ticket #{ticket_id} - Issue Received"),
    "reminder": N_("Support Ticket #{ticket_id} - Follow-up: Still Open"),
    "escalation": "[Escalation] Ticket #{ticket_id} still open",
}
# What the support team reads is in English; what the customer reads, in their language.
TEAM_KINDS: frozenset[NotificationKind] = frozenset({"escalation"})

# Email always goes out (the seed's real channel); a text channel only when the customer
# wrote from it or a rule asks for it. Chat has no channel of its own to answer on.
TEXT_CHANNELS = ("sms", "whatsapp")


@dataclass(frozen=True)
class Email:
    """An email ready to send: the message (or its bytes on the wire, see ``outgoing_email``),
    its envelope, and the text kept on record."""

    mail: Message | bytes
    sender: str
    recipient: str
    text: str


@dataclass(frozen=True)
class ComposedEmail(Email):
    """An email as a ``Message`` (what ``email_message`` makes)."""

    mail: Message


def channels_for(
    channel: str,
    category: Category | None,
    rules: Mapping[Category, Sequence[str]],
    *,
    has_email: bool = True,
) -> list[str]:
    """Email, the customer's own text channel, and whatever the category's rule adds. An
    incident that came in by text without an address (the Twilio intake) has no email."""
    wanted = {"email", channel, *(rules.get(category, ()) if category else ())}
    return ["email"] * has_email + [c for c in TEXT_CHANNELS if c in wanted]


# At most this much of the customer's message is quoted back to them (NOTIFIER_QUOTE_MESSAGE).
EXCERPT_CHARACTERS = 160
# Characters that read as a dot in a host name, and the ways people defang one ("evil[.]com").
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": ".", "\u2024": "."})
_DEFANGED_DOT = re.compile(r"[\[({]\s*(?:\.|dot)\s*[\])}]", re.I)
# A word that could take a reader somewhere: a scheme, an @, a slash, or a dot between two
# letters or digits (host names in any script, IP addresses, "e.g." too: an excerpt may lose
# a little prose). A plain number with one decimal point ("3.50") stays.
_LINK_LIKE = re.compile(r"://|@|/|\\|[^\W_]\.[^\W_]|^www\.|\.[^\W\d_]{2,}$", re.I)
_AMOUNT = re.compile(r"[^\w]*\d+(?:[.,]\d+)?[^\w]*")


def excerpt(message: str) -> str:
    """The start of ``message``, on one line, with every word that could be a link, a host
    name or an email address replaced: what the company's own mail may repeat of what anyone
    typed. Compared after NFKC (fullwidth letters and dots, look-alike forms) with format
    characters (zero-width spaces, bidirectional controls) removed, so hiding a dot does not
    hide a host."""
    text = unicodedata.normalize("NFKC", one_line(message))
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_DOTS)
    text = _DEFANGED_DOT.sub(".", text)
    words = [
        "[link removed]" if _LINK_LIKE.search(word) and not _AMOUNT.fullmatch(word) else word
        for word in text.split(" ")
    ]
    text = " ".join(words)
    if len(text) <= EXCERPT_CHARACTERS:
        return text
    return text[: EXCERPT_CHARACTERS - 1].rstrip() + "…"


def _context(
    view: IncidentView, kind: NotificationKind, support_address: str, quote: bool
) -> dict[str, object]:
    language = ENGLISH if kind in TEAM_KINDS else supported(view.language)
    ticket_id = one_line(view.ticket_id)
    # The support team reads the whole message; a customer at most an excerpt, by default
    # nothing: an acknowledgement that repeats any text to any address relays phishing.
    customer_sees = excerpt(view.message) if quote else ""
    message = view.message if kind in TEAM_KINDS else customer_sees
    return {
        "ticket_id": ticket_id,
        "incident_id": view.incident_id,
        "message": message,
        "received": received_at(view.created_at, language),
        "support_address": support_address,
        "language": language,
        "subject": gettext_in(language, SUBJECTS[kind]).format(ticket_id=ticket_id),
    }


def email_message(
    view: IncidentView,
    kind: NotificationKind,
    sender: str,
    support_address: str,
    to: str | None = None,
    *,
    boundary: str | None = None,
    quote: bool = False,
) -> ComposedEmail:
    """The email of ``kind`` about ``view``; to the customer unless ``to`` says otherwise.

    ValueError when the sender or recipient is not one well-formed address.

    Built with the email package's compat32 classes: EmailMessage's header registry parses
    every header as it is set, which made composing cost ~1.8 ms a mail, the notifier's
    largest single cost. Nothing unparsed reaches a header: the addresses come from
    ``parse_address`` and every other value is one line; compat32's generator also refuses a
    value that would start a header of its own.
    """
    return _as_message(_content(view, kind, sender, support_address, to, quote), boundary)


def _as_message(content: _Content, boundary: str | None) -> ComposedEmail:
    from_address, to_address, text, html, subject, message_id = content
    mail: Message
    if from_address.addr_spec.isascii() and to_address.addr_spec.isascii():
        # A boundary of our own: the generator would otherwise make one and compile a regex to
        # check the bodies for it, per mail. "=_" cannot occur in base64 text.
        mail = MIMEMultipart("alternative", boundary=boundary or _boundary())
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
    return ComposedEmail(mail, from_address.addr_spec, to_address.addr_spec, text)


class _Content(NamedTuple):
    sender: Address
    recipient: Address
    text: str
    html: str
    subject: str
    message_id: str


def _content(
    view: IncidentView,
    kind: NotificationKind,
    sender: str,
    support_address: str,
    to: str | None,
    quote: bool,
) -> _Content:
    context = _context(view, kind, support_address, quote)
    texts = templates(str(context["language"]))
    return _Content(
        parse_address(sender),
        parse_address(to or view.email),
        texts.get_template(f"{kind}_email.txt.j2").render(context),
        texts.get_template(f"{kind}_email.html.j2").render(context),
        str(context["subject"]),
        # Deterministic per (incident, kind): a resend is recognisably the same mail.
        f"<{view.incident_id}.{kind}@incidentflow>",
    )


def _boundary() -> str:
    return f"=_{uuid.uuid4().hex}"


# Header values written as they are: printable ASCII, the line short enough to need no folding
# (the rule of the SMTP adapter's _Compat32OnTheWire policy, which would write them the same).
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
_MAX_HEADER_LINE = 78


def outgoing_email(
    view: IncidentView,
    kind: NotificationKind,
    sender: str,
    support_address: str,
    to: str | None = None,
    *,
    boundary: str | None = None,
    quote: bool = False,
) -> Email:
    """The email of ``kind`` about ``view`` as ``email_message`` makes it, as bytes on the wire
    when nothing in its headers needs encoding or folding (nearly every mail), else as the
    ``Message`` to flatten. ValueError as ``email_message``.

    The bytes are written here, not by the email package: building the message objects and
    flattening them was 28 % of the notifier's samples at 280 incidents/s, for a layout that
    is the same in every mail. A property test holds them byte for byte to what flattening
    ``email_message``'s Message gives (the SMTP adapter's ``wire_bytes``)."""
    content = _content(view, kind, sender, support_address, to, quote)
    from_address, to_address, text, html, subject, message_id = content
    if from_address.addr_spec.isascii() and to_address.addr_spec.isascii():
        headers = (
            ("From", formataddr((from_address.display_name, from_address.addr_spec))),
            ("To", formataddr((to_address.display_name, to_address.addr_spec))),
            ("Subject", subject),
            ("Message-ID", message_id),
        )
        lines = [f"{name}: {value}\r\n" for name, value in headers]
        if all(
            len(line) <= _MAX_HEADER_LINE + 2 and _PRINTABLE_ASCII.fullmatch(value)
            for line, (_, value) in zip(lines, headers, strict=True)
        ):
            wire = _multipart_alternative("".join(lines), text, html, boundary or _boundary())
            return Email(wire, from_address.addr_spec, to_address.addr_spec, text)
    return _as_message(content, boundary)


def _multipart_alternative(headers: str, text: str, html: str, boundary: str) -> bytes:
    """A multipart/alternative of ``text`` and ``html``, base64 UTF-8, as compat32 writes it."""
    content_type = f'Content-Type: multipart/alternative; boundary="{boundary}"'
    if len(content_type) > _MAX_HEADER_LINE:  # as compat32 folds it (always, for _boundary's)
        content_type = content_type.replace("; ", ";\r\n ", 1)
    parts = [f"{content_type}\r\nMIME-Version: 1.0\r\n{headers}\r\n".encode("ascii")]
    for subtype, body in (("plain", text), ("html", html)):
        parts.append(
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode("ascii")
        )
        # 76-character lines, as the email package's base64 body encoding makes them.
        parts.append(base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n") + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def text_message(view: IncidentView, kind: NotificationKind = "ack") -> str:
    """The text of ``kind`` (ack, reminder) about ``view``, on one line."""
    template = templates(supported(view.language)).get_template(f"{kind}_sms.txt.j2")
    return template.render(ticket_id=one_line(view.ticket_id)).strip()


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
    try:
        header = policy.default.header_factory("To", one_line(value))
    except Exception as exc:
        # The parser itself fails on some inputs: ". <a@b.example>" raises AttributeError
        # in Python 3.11's _header_value_parser (found by the property test of the mails).
        raise ValueError("not one well-formed email address") from exc
    addresses = header.addresses
    if header.defects or len(addresses) != 1 or not addresses[0].domain:
        raise ValueError("not one well-formed email address")
    address: Address = addresses[0]
    return address
