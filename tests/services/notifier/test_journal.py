"""The send journal: a notifier killed -9 between handing a message to the provider (the SMTP
server, Twilio) and recording it in Postgres does not send it again. Real processes, a real
kill -9, a real SMTP server, a Twilio API on loopback and Postgres."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifier.adapters.base import PermanentFailure
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts
from services.notifier.compose import email_message
from services.notifier.journal import Entry, JournaledSend, SendJournal, journal_name
from services.notifier.notifications import Key
from services.notifier.notify import UNCONFIRMED, Notifier
from services.notifier.settings import NotifierSettings
from tests.e2e.conftest import insert_ticketed_incident
from tests.fake_twilio import FakeTwilio, fake_twilio, opened_texts
from tests.fakes import Answer
from tests.services.notifier.conftest import Inbox, smtp_server
from tests.services.notifier.test_delivery import PHONE, rows, view_of
from tests.services.notifier.test_email import SENDER, VIEW

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Told:
    """A Handover that keeps what it was told, in order."""

    said: list[str] = field(default_factory=list)

    def handed_over(self) -> None:
        self.said.append("handed over")

    def taken_back(self) -> None:
        self.said.append("taken back")


def spawn_sender(
    channel: str, event_json: str, database_url: str, journal: Path | None, **env: str
) -> subprocess.Popen[str]:
    """send_once.py sending one acknowledgement over ``channel``, with a 1 s lease."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.services.notifier.send_once", event_json, channel],
        cwd=REPO,
        env={
            **os.environ,
            **env,
            "DATABASE_URL": database_url,
            "JOURNAL_DIR": str(journal or ""),
            "NOTIFIER_SEND_LEASE_SECONDS": "1",
        },
        stdout=subprocess.PIPE,
        text=True,
    )


def killed_before_reporting(victim: subprocess.Popen[str]) -> None:
    out, _ = victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL, out
    assert out == ""  # it never got to report a result


class KillingInbox(Inbox):
    """Takes the message, then kills the sender with -9 before answering 250: the moment
    between the server having a mail and the sender recording it."""

    victim: subprocess.Popen[str] | None = None
    wait_for_journal: Path | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.wait_for_journal is not None:
            # The journal line follows the final "." within microseconds; wait for it (a
            # broken journal never writes it, and the test below fails on the redelivery).
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not _journaled(self.wait_for_journal):
                await asyncio.sleep(0.01)
        assert self.victim is not None
        self.victim.send_signal(signal.SIGKILL)
        return reply


def _journaled(directory: Path) -> bool:
    return any(path.stat().st_size for path in directory.glob("*.journal"))


@contextmanager
def sender_killed_mid_send(
    inbox: KillingInbox, database_url: str, event_json: str, journal: Path | None
) -> Iterator[None]:
    inbox.wait_for_journal = journal
    inbox.victim = spawn_sender(
        "email", event_json, database_url, journal, SMTP_PORT=str(inbox.port)
    )
    killed_before_reporting(inbox.victim)
    assert len(inbox.arrived) == 1
    yield


@contextmanager
def texter_killed_mid_send(
    database_url: str, event_json: str, journal: Path | None
) -> Iterator[FakeTwilio]:
    """One SMS sent by a process that Twilio's stand-in kills -9 once it has taken the
    message, before it answers (once the journal line is written, when there is a journal)."""
    victims: list[subprocess.Popen[str]] = []

    def kill() -> None:
        deadline = time.monotonic() + 3
        while journal and time.monotonic() < deadline and not _journaled(journal):
            time.sleep(0.01)
        victims[0].send_signal(signal.SIGKILL)

    with fake_twilio() as twilio:
        twilio.before_answer = kill
        victims.append(
            spawn_sender("sms", event_json, database_url, journal, TWILIO_BASE_URL=twilio.url)
        )
        killed_before_reporting(victims[0])
        twilio.before_answer = None
        assert len(twilio.texts) == 1
        yield twilio


async def twilio_notifier(pool: asyncpg.Pool, twilio: FakeTwilio) -> Notifier:
    settings = NotifierSettings(send_lease_seconds=1)
    texts = await opened_texts(twilio.url)
    return Notifier(lambda: pool, SmtpMailer("127.0.0.1", 9), texts, settings)


async def test_a_text_handed_over_before_a_kill_is_recorded_and_not_sent_again(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    event = await insert_ticketed_incident(database_url, channel="sms", phone=PHONE)
    with texter_killed_mid_send(database_url, event.model_dump_json(), tmp_path) as twilio:
        assert (await rows(database_url, event.incident_id))["sms/ack"]["status"] == "sending"
        restarted = await twilio_notifier(pool, twilio)
        restarted.journal = SendJournal(tmp_path)
        await restarted.recover()
        row = (await rows(database_url, event.incident_id))["sms/ack"]
        assert (row["status"], row["provider_message_id"]) == ("sent", UNCONFIRMED)
        await asyncio.sleep(1.1)  # the killed claim's lease runs out; the redelivery:
        assert await restarted.send_text(view_of(event), "sms", PHONE, final=False) == "sent"
        assert twilio.requests == 1 and len(twilio.texts) == 1


async def test_without_the_journal_that_kill_sends_the_text_twice(
    pool: asyncpg.Pool, database_url: str
) -> None:
    event = await insert_ticketed_incident(database_url, channel="sms", phone=PHONE)
    with texter_killed_mid_send(database_url, event.model_dump_json(), None) as twilio:
        await asyncio.sleep(1.1)
        again = await twilio_notifier(pool, twilio)
        assert await again.send_text(view_of(event), "sms", PHONE, final=False) == "sent"
        assert len(twilio.texts) == 2


async def test_a_text_twilio_refuses_is_taken_back_before_any_retry() -> None:
    with fake_twilio() as twilio:
        texts = await opened_texts(twilio.url)
        twilio.fail_next(Answer(503, {"code": 20500, "message": "unavailable"}))
        retried = Told()
        await texts.send("sms", PHONE, "hello", handover=retried)
        assert retried.said == ["handed over", "taken back", "handed over"]
        twilio.fail_next(Answer(400, {"code": 21211, "message": "invalid To"}))
        refused = Told()
        with pytest.raises(PermanentFailure):
            await texts.send("sms", PHONE, "hello", handover=refused)
        assert refused.said == ["handed over", "taken back"]
        await texts.close()


async def test_a_mail_handed_over_before_a_kill_is_recorded_and_not_sent_again(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    event = await insert_ticketed_incident(database_url)
    with (
        smtp_server(KillingInbox()) as inbox,
        sender_killed_mid_send(inbox, database_url, event.model_dump_json(), tmp_path),
    ):
        assert (await rows(database_url, event.incident_id))["email/ack"]["status"] == "sending"
        settings = NotifierSettings(send_lease_seconds=1)
        restarted = Notifier(
            lambda: pool, SmtpMailer("127.0.0.1", inbox.port), LoggedTexts(), settings
        )
        restarted.journal = SendJournal(tmp_path)  # the killed process's slot, now free
        await restarted.recover()
        row = (await rows(database_url, event.incident_id))["email/ack"]
        assert (row["status"], row["provider_message_id"]) == ("sent", UNCONFIRMED)
        # The redelivery of the killed process's message, after its lease: nothing is sent.
        await asyncio.sleep(1.1)
        assert await restarted.send_email(view_of(event), "ack", final=False) == "sent"
        assert len(inbox.arrived) == 1
        assert not _journaled(tmp_path)  # read, recorded, emptied


async def test_without_the_journal_that_kill_sends_the_mail_twice(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The window the journal closes is real: the same kill, no journal, two emails."""
    event = await insert_ticketed_incident(database_url)
    with (
        smtp_server(KillingInbox()) as inbox,
        sender_killed_mid_send(inbox, database_url, event.model_dump_json(), None),
    ):
        await asyncio.sleep(1.1)  # the lease runs out
        again = Notifier(
            lambda: pool,
            SmtpMailer("127.0.0.1", inbox.port),
            LoggedTexts(),
            NotifierSettings(send_lease_seconds=1),
        )
        assert await again.send_email(view_of(event), "ack", final=False) == "sent"
        assert len(inbox.arrived) == 2


class RefusingRecipients(Inbox):
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return "550 5.1.1 no such user"


async def test_handed_over_is_announced_once_per_mail_and_only_once_data_ends(
    inbox: Inbox,
) -> None:
    email = email_message(VIEW, "ack", SENDER, "support@company.com")
    told = Told()
    mailer = SmtpMailer("127.0.0.1", inbox.port)
    for _ in range(2):  # a fresh connection, then the reused one
        await mailer.send(email.mail, email.sender, email.recipient, handover=told)
    await mailer.close()
    assert len(inbox.arrived) == 2 and told.said == ["handed over"] * 2
    with smtp_server(RefusingRecipients()) as refusing:
        refused = SmtpMailer("127.0.0.1", refusing.port)
        with pytest.raises(PermanentFailure):
            await refused.send(email.mail, email.sender, email.recipient, handover=told)
    assert told.said == ["handed over"] * 2  # no DATA, nothing handed over
    # A refusal of the final ".": handed over, then taken back as the reply is read.
    with smtp_server(Inbox(refusals=["554 5.7.1 rejected"])) as rejecting:
        rejected = Told()
        with pytest.raises(PermanentFailure):
            await SmtpMailer("127.0.0.1", rejecting.port).send(
                email.mail, email.sender, email.recipient, handover=rejected
            )
    assert rejected.said == ["handed over", "taken back"]


def test_a_journal_slot_is_one_process_s_and_recovery_takes_the_free_ones(
    tmp_path: Path,
) -> None:
    first, second = SendJournal(tmp_path), SendJournal(tmp_path)
    assert first.path != second.path  # two live notifiers never share a file
    lease = datetime.now(UTC)
    keys = [Key(uuid.uuid4(), "email", "ack") for _ in range(3)]
    first.handed_over(keys[0], lease)
    second.handed_over(keys[1], lease)
    second.handed_over(keys[2], lease)
    second.settled(keys[2])  # recorded: no longer needed, but still in the file
    second.close()  # as a process that died
    with first.left_behind() as entries:
        assert {e.key for e in entries} == set(keys)
        assert Entry(keys[0], lease) in entries
    with first.left_behind() as entries:
        assert entries == []  # each read once


def test_rotation_keeps_the_sends_not_yet_recorded(tmp_path: Path) -> None:
    journal = SendJournal(tmp_path, rotate_bytes=200)
    lease = datetime.now(UTC)
    kept = Key(uuid.uuid4(), "email", "ack")
    journal.handed_over(kept, lease)
    for _ in range(10):
        done = Key(uuid.uuid4(), "email", "ack")
        journal.handed_over(done, lease)
        journal.settled(done)
    assert journal.path.stat().st_size <= 200
    journal.close()
    with SendJournal(tmp_path).left_behind() as entries:
        assert entries == [Entry(kept, lease)]


def test_a_send_taken_back_is_not_recovered_unless_handed_over_again(tmp_path: Path) -> None:
    journal = SendJournal(tmp_path)
    lease = datetime.now(UTC)
    refused, retried = (Key(uuid.uuid4(), "sms", "ack") for _ in range(2))
    JournaledSend(journal, refused, lease).handed_over()
    JournaledSend(journal, refused, lease).taken_back()
    for step in ("handed_over", "taken_back", "handed_over"):  # refused once, then taken
        getattr(JournaledSend(journal, retried, lease), step)()
    journal.close()
    with SendJournal(tmp_path).left_behind() as entries:
        assert entries == [Entry(retried, lease)]
    line = Entry(refused, lease, taken_back=True).line().decode().strip()
    assert Entry.parse(line) == Entry(refused, lease, taken_back=True)


def test_journals_are_kept_per_database() -> None:
    a = journal_name("postgresql://db.internal:5432/incidentflow")
    b = journal_name("postgresql://db.internal:5432/incidentflow_test_1")
    assert a != b and "/" not in a


def test_a_journal_that_cannot_be_written_does_not_fail_the_send(tmp_path: Path) -> None:
    journal = SendJournal(tmp_path)
    os.close(journal._fd)  # as a disk gone bad under it
    journal._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail with EBADF
    journal.handed_over(Key(uuid.uuid4(), "email", "ack"), datetime.now(UTC))  # no raise
    journal.close()
