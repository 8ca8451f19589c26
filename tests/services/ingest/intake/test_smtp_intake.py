"""Mail in through ingest's SMTP listener, sent with aiosmtplib to a real ingest server."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port
from tests.services.ingest.conftest import count, ingest_settings, serve

OUR_ADDRESS = "support@bank.example"


@dataclass
class Intake:
    api: httpx.AsyncClient
    smtp_port: int
    database_url: str

    async def send(self, mail: EmailMessage) -> None:
        """Sent, and answered 250: raises aiosmtplib's exception for any other answer."""
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.smtp_port, timeout=10) as smtp:
            refused, _ = await smtp.send_message(mail)
        assert not refused

    async def incidents_from(self, address: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(  # type: ignore[no-any-return]
                "SELECT id, customer_id, channel, message, ticket_id FROM incidents"
                " WHERE lower(email) = lower($1) ORDER BY created_at",
                address,
            )
        finally:
            await conn.close()


@pytest.fixture
async def intake(rabbitmq_url: str, database_url: str) -> AsyncIterator[Intake]:
    port = free_port()
    settings = ingest_settings(
        rabbitmq_url,
        database_url,
        INTAKE_SMTP_PORT=port,
        INTAKE_SMTP_HOST="127.0.0.1",
        INTAKE_SMTP_MAX_BYTES=200_000,
        MAIL_FROM=f"Bank Support <{OUR_ADDRESS}>",
    )
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as api:
        yield Intake(api, port, database_url)


def address() -> str:
    return f"maria.{uuid.uuid4().hex[:8]}@example.com"


def mail(sender: str, body: str, subject: str = "Charged twice", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Maria <{sender}>"
    message["To"] = OUR_ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


async def test_a_mail_becomes_an_incident_of_its_sender(intake: Intake) -> None:
    sender = address()
    await intake.send(mail(sender, "I was charged twice for the same purchase at Zara."))
    [incident] = await intake.incidents_from(sender)
    assert incident["channel"] == "email"
    assert incident["customer_id"] == sender
    assert incident["message"] == "I was charged twice for the same purchase at Zara."


async def test_an_address_an_integrator_named_keeps_its_customer_id(intake: Intake) -> None:
    sender = address()
    posted = await intake.api.post(
        "/api/incidents",
        json={"customer_id": "cust-4711", "channel": "chat", "email": sender, "message": "hi"},
    )
    assert posted.status_code in (201, 202)
    await intake.send(mail(sender, "My card was declined at the supermarket", subject="Declined"))
    incidents = await intake.incidents_from(sender)
    assert [i["customer_id"] for i in incidents] == ["cust-4711", "cust-4711"]


async def test_a_reply_to_the_acknowledgement_joins_its_incident(intake: Intake) -> None:
    sender = address()
    await intake.send(mail(sender, "Someone used my card in Lisbon, I was at home in Madrid"))
    [incident] = await intake.incidents_from(sender)
    ack_id = f"<{incident['id']}.ack@incidentflow>"
    reply = mail(
        sender,
        "Here is more: it was 49.99 EUR.\n\nOn Mon, Support wrote:\n> We received your message",
        subject="Re: Support Ticket - Issue Received",
        In_Reply_To=ack_id,
        References=ack_id,
    )
    reply.add_attachment(
        b"%PDF-1.4 statement", maintype="application", subtype="pdf", filename="statement.pdf"
    )
    await intake.send(reply)

    assert len(await intake.incidents_from(sender)) == 1
    state = (await intake.api.get(f"/api/incidents/{incident['id']}")).json()
    customer = [m for m in state["messages"] if m["direction"] == "in"]
    assert len(customer) == 2
    assert customer[1]["body"] == "Here is more: it was 49.99 EUR."
    assert customer[1]["attachments"] == [
        {"filename": "statement.pdf", "content_type": "application/pdf", "size": 18}
    ]


async def test_a_reply_naming_someone_elses_incident_does_not_join_it(intake: Intake) -> None:
    victim, intruder = address(), address()
    await intake.send(mail(victim, "My account is locked after three wrong PINs"))
    [incident] = await intake.incidents_from(victim)
    await intake.send(
        mail(
            intruder,
            "Please send me the details",
            In_Reply_To=f"<{incident['id']}.ack@incidentflow>",
        )
    )
    state = (await intake.api.get(f"/api/incidents/{incident['id']}")).json()
    assert [m for m in state["messages"] if m["direction"] == "in"][1:] == []
    assert len(await intake.incidents_from(intruder)) == 1


async def test_a_reply_reopens_a_resolved_incident(intake: Intake) -> None:
    sender = address()
    await intake.send(mail(sender, "The refund for order 5521 never arrived"))
    [incident] = await intake.incidents_from(sender)
    resolved = await intake.api.patch(
        f"/api/incidents/{incident['id']}", json={"status": "resolved"}
    )
    assert resolved.json()["status"] == "resolved"
    await intake.send(
        mail(sender, "Still no refund.", In_Reply_To=f"<{incident['id']}.ack@incidentflow>")
    )
    state = (await intake.api.get(f"/api/incidents/{incident['id']}")).json()
    assert state["status"] == "open"
    assert [a["event_name"] for a in state["audit"]][-2:] == [
        "incident.reopened",
        "incident.message_received",
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"X_Autoreply": "yes"},
    ],
)
async def test_auto_replies_create_nothing(intake: Intake, headers: dict[str, str]) -> None:
    sender = address()
    automatic = mail(sender, "I am out of the office until Monday.", **headers)
    await intake.send(automatic)
    assert await intake.incidents_from(sender) == []
    assert (
        await count(
            intake.database_url,
            "SELECT count(*) FROM inbound_receipts WHERE external_id = $1 AND outcome = 'ignored'",
            automatic["Message-ID"],
        )
        == 1
    )


async def test_our_own_mail_coming_back_is_a_loop(intake: Intake) -> None:
    looped = mail(OUR_ADDRESS, "Support Ticket #LOCAL-1 - Issue Received")
    await intake.send(looped)
    assert await intake.incidents_from(OUR_ADDRESS) == []


async def test_a_mail_delivered_twice_is_taken_once(intake: Intake) -> None:
    sender = address()
    once = mail(sender, "A payment of 120 GBP failed but left my account")
    await intake.send(once)
    await intake.send(once)  # the sending server retries after a lost answer
    assert len(await intake.incidents_from(sender)) == 1


async def test_a_mail_over_the_size_limit_is_refused(intake: Intake) -> None:
    sender = address()
    big = mail(sender, "x" * 300_000)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await intake.send(big)
    assert refused.value.code == 552
    assert await intake.incidents_from(sender) == []


async def test_html_only_mail_is_stored_as_text(intake: Intake) -> None:
    sender = address()
    html = EmailMessage()
    html["From"] = sender
    html["To"] = OUR_ADDRESS
    html["Subject"] = "Statement"
    html["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    html.set_content(
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head>"
        "<body><p>My statement shows a <b>wrong amount</b> for May.</p></body></html>",
        subtype="html",
    )
    await intake.send(html)
    [incident] = await intake.incidents_from(sender)
    assert "wrong amount" in incident["message"]
    assert "<" not in incident["message"] and "alert" not in incident["message"]


async def test_a_reply_naming_the_ticket_in_its_subject_joins_it(
    intake: Intake, database_url: str
) -> None:
    """No reply headers (a new mail, a client that drops them): the subject's ticket."""
    sender = address()
    await intake.send(mail(sender, "My statement lists a payment twice"))
    [incident] = await intake.incidents_from(sender)
    conn = await asyncpg.connect(database_url)
    try:  # ticketing's part, which this test runs without
        await conn.execute(
            "UPDATE incidents SET ticket_id = 'TKT-5a5a5a5a' WHERE id = $1", incident["id"]
        )
    finally:
        await conn.close()
    await intake.send(
        mail(sender, "Any news?", subject="Re: Support Ticket #TKT-5a5a5a5a - Issue Received")
    )
    assert len(await intake.incidents_from(sender)) == 1
    state = (await intake.api.get(f"/api/incidents/{incident['id']}")).json()
    assert [m["body"] for m in state["messages"] if m["direction"] == "in"][1:] == ["Any news?"]


async def test_a_sender_over_the_limit_is_told_to_try_later(
    rabbitmq_url: str, database_url: str
) -> None:
    port = free_port()
    settings = ingest_settings(
        rabbitmq_url,
        database_url,
        INTAKE_SMTP_PORT=port,
        INTAKE_SMTP_HOST="127.0.0.1",
        rate_limit_per_customer="2/minute",
    )
    sender = address()
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as api:
        intake = Intake(api, port, database_url)
        await intake.send(mail(sender, "First: charged twice"))
        await intake.send(mail(sender, "Second: and again"))
        with pytest.raises(aiosmtplib.SMTPResponseException) as later:
            await intake.send(mail(sender, "Third: still"))
    assert later.value.code == 451  # the sending server keeps it and tries again later
    assert len(await intake.incidents_from(sender)) == 2


async def test_starttls_is_offered_with_a_certificate(
    rabbitmq_url: str, database_url: str, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    settings = ingest_settings(
        rabbitmq_url,
        database_url,
        INTAKE_SMTP_PORT=port,
        INTAKE_SMTP_HOST="127.0.0.1",
        INTAKE_SMTP_TLS_CERT=str(cert),
        INTAKE_SMTP_TLS_KEY=str(key),
    )
    sender = address()
    trusting = ssl.create_default_context(cafile=str(cert))
    async with serve(settings):
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=False, tls_context=trusting, timeout=10
        )
        async with smtp:
            await smtp.ehlo()
            assert smtp.supports_extension("starttls")
            await smtp.starttls(server_hostname="localhost")
            assert smtp.get_transport_info("cipher") is not None  # the session is encrypted
            refused, _ = await smtp.send_message(mail(sender, "Sent over TLS: card blocked"))
    assert not refused
    async with httpx.AsyncClient() as unused:
        [incident] = await Intake(unused, port, database_url).incidents_from(sender)
    assert incident["message"] == "Sent over TLS: card blocked"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
