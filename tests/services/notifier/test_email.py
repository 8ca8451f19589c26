"""Acknowledgement, reminder and escalation emails: content, escaping, stable Message-ID, no
header injection, delivered over real SMTP (plain, STARTTLS, implicit TLS, AUTH) to aiosmtpd."""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib.email import flatten_message
from babel.messages.pofile import read_po
from hypothesis import event, given
from hypothesis import strategies as st

from contracts.events import Category, NotificationKind
from services.notifier.adapters.base import PermanentFailure
from services.notifier.adapters.smtp import ON_THE_WIRE, SmtpMailer, wire_bytes
from services.notifier.compose import (
    SUBJECTS,
    channels_for,
    email_message,
    outgoing_email,
    parse_address,
    text_message,
)
from services.notifier.notifications import IncidentView
from services.notifier.translations import LOCALE_DIR, gettext_in
from tests.services.notifier.conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    Certificate,
    Inbox,
    authenticate,
    smtp_server,
)

VIEW = IncidentView(
    incident_id=uuid.UUID("e5f7a2b1-4c8d-4e6f-8a9b-0c1d2e3f4a5b"),
    ticket_id="TKT-98042a72",
    message="My credit card payment was deducted twice yesterday.",
    email="customer@example.com",
    channel="email",
    created_at=datetime(2025, 11, 9, 10, 30, tzinfo=UTC),
)
SENDER = "Customer Support <support@company.com>"
# Markup with no slash or dot in it: the excerpt a customer's mail may quote keeps it whole.
HOSTILE = "<img src=x onerror=alert('x')> & charged twice"


def on_the_wire(mail: Message) -> EmailMessage:
    """``mail`` as the SMTP client writes it, read back by a modern parser."""
    parsed = message_from_bytes(flatten_message(mail), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(view: IncidentView, kind: str = "ack") -> tuple[str, str]:
    """The text and HTML of a mail that quotes the customer (NOTIFIER_QUOTE_MESSAGE=true; off
    by default, tests/security/ checks that)."""
    email = email_message(view, kind, SENDER, "support@company.com", quote=True)  # type: ignore[arg-type]
    mail = on_the_wire(email.mail)
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_acknowledgement_follows_the_seed() -> None:
    # The seed's acknowledgement quotes the message: with NOTIFIER_QUOTE_MESSAGE=true.
    email = email_message(VIEW, "ack", SENDER, "support@company.com", quote=True)
    assert email.mail["Subject"] == "Support Ticket #TKT-98042a72 - Issue Received"
    assert email.mail["To"] == "customer@example.com"
    assert (email.sender, email.recipient) == ("support@company.com", "customer@example.com")
    text, html = parts(VIEW)
    assert email.text == text
    for line in (
        "Ticket ID: TKT-98042a72",
        "Incident Reference: e5f7a2b1-4c8d-4e6f-8a9b-0c1d2e3f4a5b",
        "Status: Open (Under Investigation)",
        "Received: November 09, 2025 at 10:30 AM UTC",
        "My credit card payment was deducted twice yesterday.",
        "You will receive an update within 24 hours",
        "support@company.com",
    ):
        assert line in text
    for fragment in ("TKT-98042a72", "November 09, 2025 at 10:30 AM UTC", "deducted twice"):
        assert fragment in html


@pytest.mark.parametrize("kind", ["ack", "reminder", "escalation"])
def test_mail_goes_out_as_aiosmtplib_would_flatten_it(kind: NotificationKind) -> None:
    mail = email_message(VIEW, kind, SENDER, "s@c.com").mail
    # aiosmtplib ends lines with LF and makes them CRLF as it sends.
    assert wire_bytes(mail) == flatten_message(mail).replace(b"\n", b"\r\n")


@given(
    st.sampled_from(["To", "Subject", "Message-ID", "Content-Type", "X-Long-Header-Name"]),
    st.text(max_size=120) | st.text(alphabet=st.characters(max_codepoint=127), max_size=90),
)
def test_headers_go_out_as_compat32_folds_them(name: str, value: str) -> None:
    compat32 = policy.compat32.clone(linesep="\r\n")

    def folded(with_policy: policy.Policy) -> bytes | type[Exception]:
        try:
            return with_policy.fold_binary(name, value)
        except Exception as exc:  # a value compat32 refuses must be refused the same way
            return type(exc)

    assert folded(ON_THE_WIRE) == folded(compat32)


_LOCAL = st.text(alphabet="abcxyz0129.+_-", min_size=1, max_size=20)
_ADDRESSES = (
    st.builds(lambda local, domain: f"{local}@{domain}.example", _LOCAL, _LOCAL)
    | st.builds(
        lambda name, local: f'"{name}" <{local}@company.example>',
        st.text(max_size=40),
        _LOCAL,
    )
    | st.builds(lambda name: f"{name} <support@company.example>", st.text(max_size=40))
    | st.sampled_from(["kunde@bücher.de", "Zoë <zoe@example.com>", "a@b", "x", "a@b, c@d"])
)


def composed(compose: Any, view: IncidentView, kind: str, sender: str, boundary: str) -> Any:
    try:
        return compose(view, kind, sender, "support@company.com", boundary=boundary)
    except ValueError:
        return ValueError


@given(
    # The one a mail gets (34 characters), and a short one: its header then needs no folding.
    st.sampled_from([f"=_{uuid.uuid4().hex}", "=_b0undary"]),
    st.sampled_from(["ack", "reminder", "escalation"]),
    st.text(max_size=90),
    st.text(max_size=300),
    _ADDRESSES,
    _ADDRESSES,
)
def test_mails_written_directly_are_the_bytes_the_email_package_writes(
    boundary: str, kind: str, ticket_id: str, message: str, customer: str, sender: str
) -> None:
    fields = {"ticket_id": ticket_id, "message": message, "email": customer}
    view = IncidentView(**{**VIEW.__dict__, **fields})
    fast = composed(outgoing_email, view, kind, sender, boundary)
    slow = composed(email_message, view, kind, sender, boundary)
    if slow is ValueError:
        assert fast is ValueError
        return
    assert (fast.sender, fast.recipient, fast.text) == (slow.sender, slow.recipient, slow.text)
    event(f"written directly: {isinstance(fast.mail, bytes)}")
    if isinstance(fast.mail, bytes):
        assert fast.mail == wire_bytes(slow.mail)
    else:  # headers that need encoding or folding: the email package writes them
        assert type(fast.mail) is type(slow.mail)

        def flat(mail: Message) -> bytes:  # an EmailMessage gets a boundary as it is written
            return re.sub(rb"={15}\d+==", b"B", flatten_message(mail))

        assert flat(fast.mail) == flat(slow.mail)


def test_a_plain_mail_is_written_directly() -> None:
    # The seed's sender and a plain customer address: the way nearly every mail goes.
    for kind in ("ack", "reminder", "escalation"):
        email = outgoing_email(VIEW, kind, SENDER, "support@company.com")
        assert isinstance(email.mail, bytes)
    named = outgoing_email(VIEW, "ack", "Jörg Müller <support@company.com>", "s@c.com")
    assert isinstance(named.mail, bytes)  # an encoded name is ASCII, short enough
    utf8 = IncidentView(**{**VIEW.__dict__, "email": "kunde@bücher.de"})
    assert isinstance(outgoing_email(utf8, "ack", SENDER, "s@c.com").mail, EmailMessage)


def test_mail_is_multipart_alternative_text_then_html() -> None:
    mail = on_the_wire(email_message(VIEW, "reminder", SENDER, "s@c.com").mail)
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    # Base64, not quoted-printable: the email package encodes the latter in Python, at twice
    # the CPU per mail (services/notifier/compose.py).
    assert [p["Content-Transfer-Encoding"] for p in mail.iter_parts()] == ["base64", "base64"]
    assert all(p.get_content_charset() == "utf-8" for p in mail.iter_parts())


@pytest.mark.parametrize("kind", ["ack", "reminder", "escalation"])
def test_customer_text_is_escaped_in_html_and_verbatim_in_text(kind: str) -> None:
    text, html = parts(IncidentView(**{**VIEW.__dict__, "message": HOSTILE}), kind)
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(&#39;x&#39;)&gt; &amp; charged twice" in html
    assert HOSTILE in text


def test_message_id_is_the_same_for_a_resend_and_differs_by_kind() -> None:
    first = email_message(VIEW, "ack", "s@c.com", "s@c.com").mail["Message-ID"]
    again = email_message(VIEW, "ack", "s@c.com", "s@c.com").mail["Message-ID"]
    reminder = email_message(VIEW, "reminder", "s@c.com", "s@c.com").mail["Message-ID"]
    assert first == again == f"<{VIEW.incident_id}.ack@incidentflow>" != reminder


@pytest.mark.parametrize(
    "hostile",
    [
        "customer@example.com\r\nBcc: evil@example.com",
        "customer@example.com, evil@example.com",
        "x\nBcc: evil@example.com",
        "not-an-address",
        ". <customer@example.com>",  # Python's header parser fails on it (AttributeError)
    ],
)
def test_a_recipient_that_is_not_one_address_is_refused(hostile: str) -> None:
    with pytest.raises(ValueError):
        email_message(IncidentView(**{**VIEW.__dict__, "email": hostile}), "ack", "s@c.com", "s")


def test_display_names_keep_their_line_breaks_out_of_the_headers() -> None:
    address = parse_address('"Support\r\nBcc: evil@example.com" <support@company.com>')
    assert address.addr_spec == "support@company.com"
    assert "\n" not in str(address) and "\r" not in str(address)


@pytest.mark.parametrize(
    "value",
    [
        "customer@example.com",
        "a.b+tag@mail.example.co.uk",
        "o'brien@example.ie",
        "x@localhost",
        "Support <support@company.com>",
        '"quoted local"@example.com',
        "a..b@example.com",
        ".a@example.com",
        "bad@@example.com",
        "a@-example-.com",
        "zoë@example.com",
        "a@b@example.com",
        "a@example.com, b@example.com",
    ],
)
def test_plain_addresses_take_the_short_way_to_the_same_answer(value: str) -> None:
    """parse_address's pattern for plain addresses agrees with the email package's parser."""
    header = policy.default.header_factory("To", value)
    found = header.addresses
    if header.defects or len(found) != 1 or not found[0].domain:
        with pytest.raises(ValueError):
            parse_address.__wrapped__(value)
        return
    address = parse_address.__wrapped__(value)
    assert (str(address), address.addr_spec, address.display_name) == (
        str(found[0]),
        found[0].addr_spec,
        found[0].display_name,
    )


def test_non_ascii_names_are_encoded_and_non_ascii_addresses_go_as_utf8() -> None:
    named = on_the_wire(
        email_message(
            IncidentView(**{**VIEW.__dict__, "email": "Zoë Müller <zoe@example.com>"}),
            "ack",
            "Kundenservice Bäckerei <support@company.com>",
            "s@c.com",
        ).mail
    )
    assert named["To"].addresses[0].display_name == "Zoë Müller"
    assert named["From"].addresses[0].addr_spec == "support@company.com"
    # An internationalised domain: sent raw under SMTPUTF8, never as an encoded word.
    international = email_message(
        IncidentView(**{**VIEW.__dict__, "email": "kunde@bücher.de"}), "ack", SENDER, "s@c.com"
    )
    assert international.recipient == "kunde@bücher.de"
    wire = flatten_message(international.mail, utf8=True)
    assert "To: kunde@bücher.de".encode() in wire
    assert "deducted twice" in parts(VIEW)[0]


def test_channels_follow_the_customer_plus_email_and_the_category_rules() -> None:
    rules: dict[Category, list[str]] = {"fraud_report": ["sms"]}
    assert channels_for("email", "duplicate_payment", rules) == ["email"]
    assert channels_for("chat", "other", rules) == ["email"]
    assert channels_for("sms", "other", rules) == ["email", "sms"]
    assert channels_for("whatsapp", "other", rules) == ["email", "whatsapp"]
    assert channels_for("email", "fraud_report", rules) == ["email", "sms"]
    assert channels_for("whatsapp", "fraud_report", rules) == ["email", "sms", "whatsapp"]
    # A text that came in without an address is answered by text alone.
    assert channels_for("sms", "other", rules, has_email=False) == ["sms"]
    assert channels_for("sms", "fraud_report", {}) == ["email", "sms"]


def test_the_text_message_is_one_line() -> None:
    assert text_message(VIEW).startswith("Ticket #TKT-98042a72 created.")
    assert "\n" not in text_message(IncidentView(**{**VIEW.__dict__, "ticket_id": "T\r\n1"}))


async def send(mailer: SmtpMailer, view: IncidentView = VIEW, kind: str = "ack") -> str | None:
    # As the notifier composes: bytes on the wire for a plain mail.
    email = outgoing_email(view, kind, SENDER, "support@company.com", quote=True)  # type: ignore[arg-type]
    delivery = await mailer.send(email.mail, email.sender, email.recipient)
    return delivery.provider_message_id


@pytest.mark.parametrize("compose", [email_message, outgoing_email])
async def test_hostile_ticket_id_and_sender_name_add_no_header_on_the_wire(
    inbox: Inbox, compose: Any
) -> None:
    view = IncidentView(**{**VIEW.__dict__, "ticket_id": "T-1\r\nBcc: evil@example.com"})
    email = compose(
        view, "ack", '"Support\r\nBcc: evil@example.com" <support@company.com>', "s@c.com"
    )
    await SmtpMailer("127.0.0.1", inbox.port).send(email.mail, email.sender, email.recipient)
    [arrived] = inbox.arrived
    assert arrived.rcpt_tos == ["customer@example.com"]
    assert arrived.mail_from == "support@company.com"
    received = arrived.message
    assert received["Bcc"] is None
    headers = arrived.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in headers and b"\nbcc:" not in headers.lower()
    assert sorted(name for name, _ in received.items()) == [
        "Content-Type",
        "From",
        "MIME-Version",
        "Message-ID",
        "Subject",
        "To",
    ]
    assert received["Subject"] == "Support Ticket #T-1 Bcc: evil@example.com - Issue Received"


async def test_plain_smtp_delivers_both_parts_and_the_message_id(inbox: Inbox) -> None:
    hostile = IncidentView(**{**VIEW.__dict__, "message": HOSTILE})
    reply = await send(SmtpMailer("127.0.0.1", inbox.port), hostile, "reminder")
    assert reply is not None and "TESTQUEUEID" in reply
    [arrived] = inbox.arrived
    received = arrived.message
    assert received["Subject"] == "Support Ticket #TKT-98042a72 - Follow-up: Still Open"
    assert received["Message-ID"] == f"<{VIEW.incident_id}.reminder@incidentflow>"
    assert received.get_content_type() == "multipart/alternative"
    text, html = received.get_body(("plain",)), received.get_body(("html",))
    assert text is not None and html is not None
    assert HOSTILE in text.get_content() and "still open" in text.get_content()
    assert "<img" not in html.get_content() and "&lt;img" in html.get_content()


async def test_starttls_with_the_test_ca(certificate: Certificate) -> None:
    inbox = Inbox()
    with smtp_server(inbox, tls_context=certificate.server_context(), require_starttls=True):
        mailer = SmtpMailer("127.0.0.1", inbox.port, start_tls=True, ca_file=certificate.cert)
        await send(mailer)
        untrusted = SmtpMailer("127.0.0.1", inbox.port, start_tls=True)
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):
            await send(untrusted)
        # The server demands STARTTLS: a client that skips it is refused.
        with pytest.raises(aiosmtplib.SMTPException):
            await send(SmtpMailer("127.0.0.1", inbox.port))
    assert len(inbox.arrived) == 1


async def test_implicit_tls_with_the_test_ca_or_without_validation(
    certificate: Certificate,
) -> None:
    inbox = Inbox()
    with smtp_server(inbox, ssl_context=certificate.server_context()):
        await send(SmtpMailer("127.0.0.1", inbox.port, use_tls=True, ca_file=certificate.cert))
        await send(SmtpMailer("127.0.0.1", inbox.port, use_tls=True, validate_certs=False))
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):
            await send(SmtpMailer("127.0.0.1", inbox.port, use_tls=True))
    assert len(inbox.arrived) == 2


async def test_auth_right_password_delivers_wrong_one_fails(certificate: Certificate) -> None:
    inbox = Inbox()
    with smtp_server(
        inbox,
        tls_context=certificate.server_context(),
        authenticator=authenticate,
        auth_required=True,
    ):

        def mailer(password: str) -> SmtpMailer:
            return SmtpMailer(
                "127.0.0.1",
                inbox.port,
                username=SMTP_USER,
                password=password,
                start_tls=True,
                ca_file=certificate.cert,
            )

        await send(mailer(SMTP_PASSWORD))
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await send(mailer("wrong"))
    assert len(inbox.arrived) == 1


async def test_refusals_are_permanent_for_5xx_and_retryable_for_4xx() -> None:
    inbox = Inbox(refusals=["554 5.7.1 rejected as spam", "451 4.3.0 try again later"])
    with smtp_server(inbox):
        mailer = SmtpMailer("127.0.0.1", inbox.port)
        with pytest.raises(PermanentFailure):
            await send(mailer)
        with pytest.raises(aiosmtplib.SMTPDataError) as transient:
            await send(mailer)
        assert not isinstance(transient.value, PermanentFailure)
        await send(mailer)
    assert len(inbox.arrived) == 1


async def test_sends_in_flight_are_bounded_per_process() -> None:
    inbox = Inbox(delay=0.3)
    with smtp_server(inbox):
        mailer = SmtpMailer("127.0.0.1", inbox.port, max_concurrent=2)
        views = [IncidentView(**{**VIEW.__dict__, "incident_id": uuid.uuid4()}) for _ in range(6)]
        await asyncio.gather(*(send(mailer, view) for view in views))
    assert len(inbox.arrived) == 6
    assert inbox.max_in_flight == 2


# -- the customer's language ------------------------------------------------------------------


def _text_and_html(mail: Message) -> tuple[str, str]:
    parsed = on_the_wire(mail)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


@pytest.mark.parametrize("language", ["es", "de", "fr", "pt", "it"])
def test_acknowledgement_and_reminder_go_out_in_the_customers_language(language: str) -> None:
    view = IncidentView(**{**VIEW.__dict__, "language": language})
    for kind in ("ack", "reminder"):
        mail = email_message(view, kind, SENDER, "support@company.com", quote=True).mail
        text, html = _text_and_html(mail)
        subject = gettext_in(language, SUBJECTS[kind]).format(ticket_id=view.ticket_id)
        assert subject != SUBJECTS[kind].format(ticket_id=view.ticket_id)
        assert on_the_wire(mail)["Subject"] == subject
        for english in ("Incident Reference", "Best regards,", "Customer Support Team"):
            translated = gettext_in(language, english)
            assert translated != english
            assert translated in text and english not in text
            assert translated in html  # trusted catalog text, written as it is
        assert f'<html lang="{language}">' in html
        assert view.message in text and view.ticket_id in text
    sms = text_message(view)
    assert sms != text_message(VIEW) and view.ticket_id in sms


def test_other_languages_get_english_and_the_team_always_english() -> None:
    dutch = IncidentView(**{**VIEW.__dict__, "language": "nl"})
    english_text, _ = _text_and_html(email_message(VIEW, "ack", SENDER, "s@c.com").mail)
    dutch_text, _ = _text_and_html(email_message(dutch, "ack", SENDER, "s@c.com").mail)
    assert dutch_text == english_text
    spanish = IncidentView(**{**VIEW.__dict__, "language": "es"})
    escalation, _ = _text_and_html(
        email_message(spanish, "escalation", SENDER, "s@c.com", to="team@company.com").mail
    )
    assert "Escalation: a customer incident is still open." in escalation


def test_every_catalog_translates_every_message_keeping_its_placeholders() -> None:
    template = read_po((LOCALE_DIR / "messages.pot").open("rb"))
    wanted = {m.id for m in template if m.id}
    assert len(wanted) >= 20
    for language in ("es", "de", "fr", "pt", "it"):
        catalog = read_po((LOCALE_DIR / f"{language}.po").open("rb"), locale=language)
        translated = {m.id: m.string for m in catalog if m.id and m.string}
        assert set(translated) == wanted, language
        for message, translation in translated.items():
            for placeholder in ("{ticket_id}", "%(ticket_id)s"):
                assert (placeholder in message) == (placeholder in translation), translation
