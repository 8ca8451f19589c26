"""Email through SMTP with aiosmtplib: plain, STARTTLS or implicit TLS, optional AUTH."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from services.notifier.adapters.base import Delivery, PermanentFailure


class SmtpMailer:
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
        self._slots = asyncio.Semaphore(max_concurrent)
        self._quitting: set[asyncio.Task[None]] = set()

    async def send(self, mail: EmailMessage, sender: str, recipient: str) -> Delivery:
        """Send ``mail``; the server's reply is kept as the provider's message id."""
        async with self._slots:
            client = aiosmtplib.SMTP(
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self._start_tls,
                use_tls=self._use_tls,
                validate_certs=self._validate_certs,
                cert_bundle=self._ca_file,
                timeout=self._timeout,
            )
            try:
                try:
                    await client.connect()
                    # An explicit envelope: the recipients are never read from headers.
                    _, reply = await client.send_message(
                        mail, sender=sender, recipients=[recipient]
                    )
                except BaseException:
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
        # The server took the mail at its 250. QUIT goes on in the background: a server that
        # dies or stalls before answering it must not turn a delivered mail into a failure
        # (which would be sent again).
        quit_task = asyncio.create_task(_quit(client))
        self._quitting.add(quit_task)
        quit_task.add_done_callback(self._quitting.discard)
        return Delivery("sent", reply)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except Exception:
        client.close()
