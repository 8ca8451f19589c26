"""Mail in from a mailbox: ingest reads INTAKE_IMAP_URL (``imaps://user@host/INBOX``), with
IDLE where the server has it (a mail is taken the moment it arrives) and a poll otherwise.

Each mail leaves the mailbox only after its incident, message or receipt is committed: it is
fetched, taken in (``receive.py``), then flagged seen and moved to INTAKE_IMAP_DONE_FOLDER.
A process killed in between finds the mail again at its next start, and its receipt (the
Message-ID) makes the second take a no-op, so a mail is neither lost nor taken twice. Several
ingest replicas reading one mailbox meet at the same receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from email.utils import parseaddr

from aioimaplib import IMAP4, IMAP4_SSL, Response

from services.ingest.intake.inbound_mail import parse_mail
from services.ingest.intake.mailbox import Mailbox
from services.ingest.intake.receive import Intake, SenderLimited
from services.ingest.intake.smtp import as_inbound
from services.ingest.settings import IngestSettings

log = logging.getLogger("incidentflow.ingest.imap")

# IDLE is renewed well inside the 30 minutes after which RFC 2177 lets a server drop it (in
# practice every INTAKE_IMAP_POLL_SECONDS, below).
IDLE_SECONDS = 300.0
# After a failure (server down, login refused, database down), the next try waits this long.
RETRY_SECONDS = 5.0


class MailboxReader:
    def __init__(
        self,
        intake: Intake,
        mailbox: Mailbox,
        password: str,
        *,
        done_folder: str,
        poll_seconds: float,
        own_address: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._intake = intake
        self._box = mailbox
        self._password = password
        self._done_folder = done_folder
        self._poll_seconds = poll_seconds
        self._own = [parseaddr(own_address)[1].lower()]
        self._tls = tls

    async def run(self) -> None:
        """Read the mailbox until cancelled, reconnecting after any failure."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "mailbox unavailable, retrying",
                    extra={"host": self._box.host, "error": repr(exc)},
                )
                await asyncio.sleep(RETRY_SECONDS)

    async def _session(self) -> None:
        box = self._box
        client: IMAP4
        if box.tls:
            client = IMAP4_SSL(box.host, box.port, ssl_context=self._tls)
        else:
            client = IMAP4(box.host, box.port)
        await client.wait_hello_from_server()
        try:
            _ok(await client.login(box.user, self._password), "LOGIN")
            # Made once; "already exists" is the usual answer and not a failure.
            await client.create(self._done_folder)
            _ok(await client.select(box.mailbox), "SELECT")
            log.info("reading mailbox", extra={"host": box.host, "mailbox": box.mailbox})
            while True:
                await self._take_all(client)
                await self._wait_for_mail(client)
        finally:
            try:
                await asyncio.wait_for(client.logout(), 5)
            except Exception:  # the connection may be gone already: nothing left to close
                log.debug("logout failed", exc_info=True)

    async def _wait_for_mail(self, client: IMAP4) -> None:
        if not client.has_capability("IDLE"):
            await asyncio.sleep(self._poll_seconds)
            return
        idle = await client.idle_start(timeout=IDLE_SECONDS)
        try:
            # Any push (EXISTS, RECENT, EXPUNGE) ends the wait and the mailbox is read again;
            # so does INTAKE_IMAP_POLL_SECONDS without one: a mail that arrived between the
            # last search and the IDLE may get no push of its own (seen with Dovecot).
            await client.wait_server_push(timeout=self._poll_seconds)
        except TimeoutError:
            pass  # read the mailbox, then IDLE again
        finally:
            client.idle_done()
            await asyncio.wait_for(idle, 10)

    async def _take_all(self, client: IMAP4) -> None:
        """Every mail in the mailbox, oldest first: taken in, then moved out."""
        found = _ok(await client.uid_search("ALL", charset=None), "UID SEARCH")
        uids = [u.decode() for line in found.lines[:1] for u in bytes(line).split()]
        for uid in uids:
            raw = _message_bytes(_ok(await client.uid("fetch", uid, "(RFC822)"), "UID FETCH"))
            if raw is None:
                continue  # moved away meanwhile (another replica took it)
            inbound = as_inbound(parse_mail(raw, own_addresses=self._own), raw, "")
            try:
                await self._intake.take_in(inbound)
            except SenderLimited:
                continue  # stays in the mailbox; taken at a later round
            await self._move_out(client, uid)

    async def _move_out(self, client: IMAP4, uid: str) -> None:
        await client.uid("store", uid, "+FLAGS.SILENT", r"(\Seen)")
        if client.has_capability("MOVE"):
            await client.uid("move", uid, self._done_folder)
            return
        await client.uid("copy", uid, self._done_folder)
        await client.uid("store", uid, "+FLAGS.SILENT", r"(\Deleted)")
        await client.expunge()


def _ok(response: Response, command: str) -> Response:
    if response.result != "OK":
        raise ConnectionError(f"{command} answered {response.result}: {response.lines[-1:]!r}")
    return response


def _message_bytes(response: Response) -> bytes | None:
    """The literal of a UID FETCH (RFC822) answer: the one bytearray among its lines."""
    for line in response.lines:
        if isinstance(line, bytearray):
            return bytes(line)
    return None


@contextlib.asynccontextmanager
async def reading_mailbox(intake: Intake, settings: IngestSettings) -> AsyncIterator[None]:
    """INTAKE_IMAP_URL read in the background for as long as the context lasts."""
    assert settings.intake_imap_url is not None and settings.intake_imap_password is not None
    tls = None
    if settings.intake_imap_ca_file is not None:
        tls = ssl.create_default_context(cafile=settings.intake_imap_ca_file)
    reader = MailboxReader(
        intake,
        Mailbox.parse(settings.intake_imap_url),
        settings.intake_imap_password.get_secret_value(),
        done_folder=settings.intake_imap_done_folder,
        poll_seconds=settings.intake_imap_poll_seconds,
        own_address=settings.mail_from,
        tls=tls,
    )
    task = asyncio.create_task(reader.run(), name="imap-intake")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
