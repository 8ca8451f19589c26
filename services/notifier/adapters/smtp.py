"""Email through SMTP with aiosmtplib: plain, STARTTLS or implicit TLS, optional AUTH."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.policy import Compat32
from pathlib import Path
from typing import Any, cast

import aiosmtplib

from services.notifier.adapters.base import Delivery, Handover, PermanentFailure

_END_OF_DATA = b"\r\n.\r\n"

# Printable ASCII only: no character that the email package's header code splits lines at.
_PRINTABLE_ASCII = re.compile(r"[ -~]*")


class _Compat32OnTheWire(Compat32):
    """compat32, the policy aiosmtplib flattens a ``Message`` with, except that a header
    short enough to need no folding is written as it is. compat32 builds a ``Header`` object
    for every header and runs its folding algorithm: 60 % of flattening a mail, for values
    that come out unchanged. A test holds this to compat32's own output.
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        limit = self.max_line_length or 78
        if (
            isinstance(value, str)
            and len(name) + 2 + len(value) <= limit
            and _PRINTABLE_ASCII.fullmatch(value)
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc, no-any-return]


ON_THE_WIRE = _Compat32OnTheWire(linesep="\r\n")


def wire_bytes(mail: Message) -> bytes:
    """``mail`` as the bytes SMTP's DATA carries (before dot-stuffing), as aiosmtplib's
    ``send_message`` would flatten a compat32 message."""
    with io.BytesIO() as out:
        BytesGenerator(out, policy=ON_THE_WIRE).flatten(mail)
        return out.getvalue()


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, telling ``handover`` the moment the end of DATA is written, and
    when the server's reply to it refuses the message.

    aiosmtplib writes the message and its final ``.`` in one call to the protocol's
    ``write``; that call is wrapped for the one DATA command. The transport sends at once
    when nothing is queued before it, so an empty write buffer afterwards means the kernel
    has the final ``.``, and the server will deliver the message even if we die now.
    """

    handover: Handover | None = None

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        handover, self.handover = self.handover, None
        protocol = self.protocol
        if handover is None or protocol is None:
            return await super().data(message, **kwargs)
        write = protocol.write

        def write_then_announce(data: bytes) -> None:
            write(data)
            transport = cast(asyncio.WriteTransport | None, protocol.transport)
            # Still buffered (a large message on a slow link): the kernel may not have the
            # end yet. Not announcing keeps the old behaviour (a crash now may send it
            # again), rather than calling sent what may never arrive.
            if data.endswith(_END_OF_DATA) and transport and not transport.get_write_buffer_size():
                handover.handed_over()

        protocol.write = write_then_announce  # type: ignore[method-assign]
        try:
            return await super().data(message, **kwargs)
        except aiosmtplib.SMTPResponseException:
            handover.taken_back()  # a refusal of the final "." (or of DATA: nothing to undo)
            raise
        finally:
            del protocol.write  # the instance attribute; the class's method shows again


class SmtpMailer:
    """Sends over a few long-lived SMTP connections (one per concurrent send at most).

    Each new connection costs a TCP handshake, the greeting, EHLO (and STARTTLS, AUTH) and a
    QUIT: several round trips per mail when every mail had its own. A connection idle for
    longer than ``idle_seconds`` is closed rather than reused, before servers time it out.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        use_tls: bool = False,
        validate_certs: bool = True,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        max_concurrent: int = 10,
        idle_seconds: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._start_tls = start_tls
        self._use_tls = use_tls
        self._validate_certs = validate_certs
        self._ca_file = str(ca_file) if ca_file else None
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        # Looked up once: aiosmtplib would otherwise ask a worker thread for it per connection.
        self._local_hostname = socket.getfqdn()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._idle: list[tuple[float, _SMTP]] = []
        self._quitting: set[asyncio.Task[None]] = set()

    async def send(
        self,
        mail: Message | bytes,
        sender: str,
        recipient: str,
        *,
        handover: Handover | None = None,
    ) -> Delivery:
        """Send ``mail``; the server's reply is kept as the provider's message id."""
        async with self._slots:
            client = await self._checkout()
            try:
                client.handover = handover
                try:
                    # An explicit envelope: the recipients are never read from headers.
                    if isinstance(mail, EmailMessage):
                        # An internationalised address: aiosmtplib decides on SMTPUTF8.
                        _, reply = await client.send_message(
                            mail, sender=sender, recipients=[recipient]
                        )
                    else:
                        # ASCII headers and base64 bodies (compose.py): 7-bit clean for any
                        # server; written by compose.outgoing_email, or flattened here, faster
                        # than aiosmtplib would (_Compat32OnTheWire).
                        wire = mail if isinstance(mail, bytes) else wire_bytes(mail)
                        _, reply = await client.sendmail(sender, [recipient], wire)
                except BaseException:
                    # Whatever state the session is in now, it is not reused.
                    client.close()
                    raise
            except aiosmtplib.SMTPRecipientsRefused as exc:
                first = exc.recipients[0]
                if all(refused.code >= 500 for refused in exc.recipients):
                    # Code and text only: the address itself stays out of the record.
                    raise PermanentFailure(
                        f"recipient refused: {first.code} {first.message}"
                    ) from exc
                raise
            except aiosmtplib.SMTPDataError as exc:
                if exc.code >= 500:
                    raise PermanentFailure(f"message refused: {exc.code} {exc.message}") from exc
                raise
            self._checkin(client)
        return Delivery("sent", reply)

    async def _checkout(self) -> _SMTP:
        """An idle connection young enough to reuse, else a new one. One the server closed
        meanwhile shows as disconnected; one it closes just now fails this send, which the
        delivery policy retries like any failed send."""
        now = time.monotonic()
        while self._idle:
            since, client = self._idle.pop()
            if client.is_connected and now - since < self._idle_seconds:
                return client
            self._quit_in_background(client)
        return await self._connect()

    def _checkin(self, client: _SMTP) -> None:
        if client.is_connected:
            self._idle.append((time.monotonic(), client))

    async def _connect(self) -> _SMTP:
        client = _SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            start_tls=self._start_tls,
            use_tls=self._use_tls,
            validate_certs=self._validate_certs,
            cert_bundle=self._ca_file,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        return client

    def _quit_in_background(self, client: aiosmtplib.SMTP) -> None:
        # A server that dies or stalls before answering QUIT must not hold anything up.
        task = asyncio.create_task(_quit(client))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    async def close(self) -> None:
        """Say QUIT on every idle connection (at shutdown)."""
        while self._idle:
            self._quit_in_background(self._idle.pop()[1])
        if self._quitting:
            await asyncio.wait(self._quitting, timeout=self._timeout)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except Exception:
        client.close()
