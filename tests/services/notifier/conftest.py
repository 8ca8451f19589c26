"""Real SMTP servers (aiosmtpd) on loopback that record what arrived, a self-signed
certificate made at test time, and a broker vhost of each test's own."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.events import IncidentAcknowledged
from contracts.topology import EVENTS
from incidentflow.batched_events import event_bodies
from incidentflow_tools.sandbox import free_port, own_vhost
from services.notifier.settings import NotifierSettings
from tests.conftest import RABBITMQ_URL
from tests.fakes import InFlight

SMTP_USER = "notifier"
SMTP_PASSWORD = "s3cret"


@dataclass(frozen=True)
class Arrived:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message; optionally slow, or failing at first."""

    delay: float = 0.0
    # Answers to give to the first DATA commands instead of accepting (e.g. "451 …").
    refusals: list[str] = field(default_factory=list)
    arrived: list[Arrived] = field(default_factory=list)
    calls: InFlight = field(default_factory=InFlight)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def max_in_flight(self) -> int:
        return self.calls.most

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.calls.serving():
            if self.delay:
                await asyncio.sleep(self.delay)
            with self._lock:
                if self.refusals:
                    return self.refusals.pop(0)
                self.arrived.append(
                    Arrived(
                        str(envelope.mail_from),
                        list(envelope.rcpt_tos),
                        envelope.original_content or b"",
                    )
                )
            return "250 2.0.0 Ok: queued as TESTQUEUEID"


AnyInbox = TypeVar("AnyInbox", bound=Inbox)


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers the failure itself (535).
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(inbox: AnyInbox, **smtp_parameters: Any) -> Iterator[AnyInbox]:
    """``inbox`` served on a free loopback port; ``smtp_parameters`` go to aiosmtpd's SMTP
    (``tls_context``, ``authenticator`` …) or, as ``ssl_context``, make it implicit TLS."""
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, **smtp_parameters)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_server(Inbox()) as running:
        yield running


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost: its own CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "incidentflow test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    paths = Certificate(directory / "cert.pem", directory / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def broker_url(rabbitmq_url: str) -> Iterator[str]:
    """A vhost of this test's own: no other test's messages or consumers in its queues."""
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base) as url:
        yield url


def settings(broker_url: str, database_url: str, inbox: Inbox, **env: str) -> NotifierSettings:
    values = {
        "RABBITMQ_URL": broker_url,
        "DATABASE_URL": database_url,
        "MIGRATE_ON_START": "false",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(inbox.port),
        **env,
    }
    return NotifierSettings(**values)  # type: ignore[arg-type]


class Acknowledgements:
    """incident.acknowledged events as they are published, one per handled delivery, alone
    or in batches."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.seen: list[IncidentAcknowledged] = []

    async def wait_for(self, count: int, timeout: float = 30) -> list[IncidentAcknowledged]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            assert time.monotonic() < deadline, f"{len(self.seen)} of {count} acknowledgements"
            message = await self.queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            self.seen += [
                IncidentAcknowledged.model_validate_json(body)
                for body in event_bodies(message.body, message.headers)
            ]
        return self.seen


@pytest.fixture
async def acknowledgements(broker_url: str) -> AsyncIterator[Acknowledgements]:
    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EVENTS.name, "topic", durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, IncidentAcknowledged.routing_key())
        yield Acknowledgements(queue)
    finally:
        await connection.close()
