"""The send journal: a notifier killed -9 between handing a mail to the SMTP server and
recording it in Postgres does not send it again. Real processes, a real kill -9, a real SMTP
server and Postgres."""

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
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifier.adapters.base import PermanentFailure
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts
from services.notifier.compose import email_message
from services.notifier.journal import Entry, SendJournal, journal_name
from services.notifier.notify import UNCONFIRMED, Notifier
from services.notifier.settings import NotifierSettings
from services.notifier.store import Key
from tests.e2e.conftest import insert_ticketed_incident
from tests.services.notifier.conftest import Inbox, smtp_server
from tests.services.notifier.test_delivery import rows, view_of
from tests.services.notifier.test_email import SENDER, VIEW

REPO = Path(__file__).resolve().parents[3]


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
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMTP_PORT": str(inbox.port),
        "JOURNAL_DIR": str(journal or ""),
        "NOTIFIER_SEND_LEASE_SECONDS": "1",
    }
    inbox.wait_for_journal = journal
    inbox.victim = subprocess.Popen(
        [sys.executable, "-m", "tests.services.notifier.send_once", event_json],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = inbox.victim.communicate(timeout=30)
    assert inbox.victim.returncode == -signal.SIGKILL, out
    assert out == ""  # it never got to report a result
    assert len(inbox.arrived) == 1
    yield


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
    announced: list[int] = []
    mailer = SmtpMailer("127.0.0.1", inbox.port)
    for _ in range(2):  # a fresh connection, then the reused one
        await mailer.send(
            email.mail, email.sender, email.recipient, handed_over=lambda: announced.append(1)
        )
    await mailer.close()
    assert len(inbox.arrived) == 2 and len(announced) == 2
    with smtp_server(RefusingRecipients()) as refusing:
        refused = SmtpMailer("127.0.0.1", refusing.port)
        with pytest.raises(PermanentFailure):
            await refused.send(
                email.mail, email.sender, email.recipient, handed_over=lambda: announced.append(1)
            )
    assert len(announced) == 2  # no DATA, nothing handed over


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
