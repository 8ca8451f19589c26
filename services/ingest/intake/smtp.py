"""Mail in over SMTP: a listener for a provider (or the company's own mail server) that
forwards support mail, on INTAKE_SMTP_PORT inside ingest's process (docs/adr/0052).

A mail is answered 250 only once its incident, message or receipt is committed; until then
the sending server holds it, and a 4xx makes it try again later, so nothing is lost when the
database is down or the process dies mid-way. A mail repeated after a lost answer finds its
receipt (the Message-ID) and is taken once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from email.utils import parseaddr
from pathlib import Path

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.ingest.intake.inbound_mail import InboundMail, parse_mail
from services.ingest.intake.receive import Inbound, Intake, SenderLimited

log = logging.getLogger("incidentflow.ingest.smtp")

# The Message-IDs the notifier gives its mails (services/notifier/compose.py): a reply names
# one in In-Reply-To or References.
OUR_MESSAGE_ID = re.compile(
    r"<([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z_]+@incidentflow>",
    re.IGNORECASE,
)
# "Support Ticket #INC-1042 - Issue Received", as the notifier's subjects name the ticket.
TICKET_REFERENCE = re.compile(r"#([A-Za-z0-9][A-Za-z0-9._-]{0,63})")


def as_inbound(mail: InboundMail, raw: bytes, envelope_sender: str) -> Inbound:
    """What the intake needs of a parsed mail."""
    sender = (mail.sender or envelope_sender).strip().lower()
    named = [
        m.group(1)
        for ref in (*mail.in_reply_to, *mail.references)
        if (m := OUR_MESSAGE_ID.fullmatch(ref))
    ]
    text = mail.text.strip() or mail.subject.strip()
    return Inbound(
        channel="email",
        # No Message-ID (rare, and against RFC 5322): the mail's bytes say whether it came twice.
        external_id=mail.message_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
        sender=sender,
        text=text,
        attachments=[
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in mail.attachments
        ],
        replies_to=tuple(dict.fromkeys(uuid.UUID(i) for i in named)),
        ticket_refs=tuple(dict.fromkeys(TICKET_REFERENCE.findall(mail.subject))),
        ignore=mail.automatic or (None if sender else "no sender"),
    )


class MailHandler:
    """aiosmtpd's handler: every recipient is ours (the provider routes only our mail here)."""

    def __init__(self, intake: Intake, own_address: str) -> None:
        self._intake = intake
        self._own = [own_address.lower()] if own_address else []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail = parse_mail(raw, own_addresses=self._own)
        inbound = as_inbound(mail, raw, envelope.mail_from or "")
        try:
            await self._intake.take_in(inbound)
        except SenderLimited as exc:
            return f"451 4.7.1 {exc}"
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("mail not stored, the sender will retry", extra={"error": repr(exc)})
            return "451 4.3.0 Temporarily unable to store the message, try again later"
        return "250 2.0.0 Message accepted"


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@contextlib.asynccontextmanager
async def listening(
    intake: Intake,
    host: str,
    port: int,
    *,
    max_bytes: int,
    own_address: str,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[asyncio.Server]:
    """The SMTP listener on ``host:port`` in the running loop for as long as the context lasts."""
    handler = MailHandler(intake, parseaddr(own_address)[1])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=max_bytes,
            enable_SMTPUTF8=True,
            tls_context=tls,
            hostname="incidentflow",
            ident="incidentflow intake",
        ),
        host,
        port,
    )
    log.info("SMTP intake listening", extra={"host": host, "port": port, "starttls": bool(tls)})
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
