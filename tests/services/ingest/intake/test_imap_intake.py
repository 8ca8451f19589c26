"""Mail in from a mailbox: ingest reading a real Dovecot server (tests/dovecot.py) over IMAP."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import free_port
from tests.dovecot import Dovecot, dovecot_server
from tests.e2e.conftest import start_service
from tests.services.ingest.conftest import ingest_settings, serve

# How soon a mail placed in the mailbox must be an incident (the figure).
WITHIN_SECONDS = 5.0


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Dovecot]:
    with dovecot_server(tmp_path / "dovecot") as server:
        yield server


def imap_settings(mailbox: Dovecot) -> dict[str, str]:
    return {
        "INTAKE_IMAP_URL": mailbox.url(),
        "INTAKE_IMAP_PASSWORD": mailbox.password,
        "INTAKE_IMAP_POLL_SECONDS": "1",
    }


def a_mail(sender: str, body: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "support@bank.example"
    mail["Subject"] = "Card problem"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    mail.set_content(body)
    return mail.as_bytes()


def address() -> str:
    return f"joao.{uuid.uuid4().hex[:8]}@example.com"


async def incidents_from(database_url: str, sender: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM incidents WHERE email = $1", sender))
    finally:
        await conn.close()


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not await condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def processed(mailbox: Dovecot, count: int) -> Callable[[], Awaitable[bool]]:
    async def moved() -> bool:
        return len(mailbox.messages("Processed")) == count

    return moved


def inbox_empty(mailbox: Dovecot) -> Callable[[], Awaitable[bool]]:
    async def empty() -> bool:
        return mailbox.messages("INBOX") == []

    return empty


def stored(database_url: str, sender: str) -> Callable[[], Awaitable[bool]]:
    async def one_incident() -> bool:
        return await incidents_from(database_url, sender) == 1

    return one_incident


@pytest.fixture
async def reading(rabbitmq_url: str, database_url: str, mailbox: Dovecot) -> AsyncIterator[Dovecot]:
    settings = ingest_settings(rabbitmq_url, database_url, **imap_settings(mailbox))
    async with serve(settings):
        yield mailbox


async def test_a_mail_in_the_mailbox_becomes_an_incident_within_5_s(
    reading: Dovecot, database_url: str
) -> None:
    sender = address()
    reading.deliver(a_mail(sender, "Alguém usou o meu cartão em Paris, eu estava em Lisboa."))
    took = await wait_for(stored(database_url, sender), timeout=WITHIN_SECONDS)
    print(f"mailbox to incident: {took:.2f} s")
    # Moved out only after it was stored, flagged seen. Dovecot's maildir shows the copy in
    # Processed a moment before the original leaves the inbox: wait for both.
    await wait_for(processed(reading, 1), timeout=5)
    await wait_for(inbox_empty(reading), timeout=5)
    assert "S" in reading.flags(reading.messages("Processed")[0], "Processed")


async def test_a_mail_found_again_after_it_was_stored_is_not_a_second_incident(
    reading: Dovecot, database_url: str
) -> None:
    """What a crash between storing and moving leaves: the stored mail still in the inbox."""
    sender = address()
    raw = a_mail(sender, "My payment to the landlord failed twice today.")
    reading.deliver(raw)
    await wait_for(processed(reading, 1), timeout=10)
    reading.deliver(raw)
    await wait_for(processed(reading, 2), timeout=10)
    assert await incidents_from(database_url, sender) == 1


def test_killed_right_after_reading_a_mail_it_takes_it_once(
    rabbitmq_url: str, database_url: str, mailbox: Dovecot, tmp_path: Path
) -> None:
    """Ingest killed with -9 the moment the mail is marked read on the server (fetched), then
    started again: exactly one incident, and the mail moved out."""
    # The password from a file, as a deployment mounts it.
    password = tmp_path / "imap_password"
    password.write_text(mailbox.password + "\n")
    env = {
        "RABBITMQ_URL": rabbitmq_url,
        "DATABASE_URL": database_url,
        "MIGRATE_ON_START": "false",
        "INTAKE_SMTP_PORT": "off",
        **imap_settings(mailbox),
        "INTAKE_IMAP_PASSWORD_FILE": str(password),
    }
    del env["INTAKE_IMAP_PASSWORD"]
    log = tmp_path / "ingest.log"
    sender = address()

    ingest = start_service("ingest", free_port(), env, log)
    path = mailbox.deliver(a_mail(sender, "I was charged twice for the same train ticket."))
    deadline = time.monotonic() + 10
    while "S" not in mailbox.flags(path):
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.001)
    ingest.send_signal(signal.SIGKILL)
    ingest.wait(10)
    stored_before_restart = asyncio.run(incidents_from(database_url, sender))

    ingest = start_service("ingest", free_port(), env, log)
    try:
        deadline = time.monotonic() + 15
        while len(mailbox.messages("Processed")) != 1:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(30)
    assert asyncio.run(incidents_from(database_url, sender)) == 1
    assert mailbox.messages("INBOX") == []
    print(f"incidents stored when killed: {stored_before_restart}")
