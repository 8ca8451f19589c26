"""Delivering notifications exactly once: claim the row, send, record what became of it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import asyncpg
import phonenumbers
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from contracts.events import NotificationKind
from incidentflow.batching import Batcher
from incidentflow.metrics import record_notification
from incidentflow.phone import to_e164
from incidentflow.privacy import mask_email, mask_phone
from services.notifier import store
from services.notifier.adapters.base import (
    Delivery,
    Handover,
    Mailer,
    PermanentFailure,
    TextChannel,
    TextSender,
)
from services.notifier.compose import TEAM_KINDS, outgoing_email, text_message
from services.notifier.journal import JournaledSend, SendJournal
from services.notifier.notifications import DELIVERED, ClaimRequest, IncidentView, Key
from services.notifier.settings import NotifierSettings

log = logging.getLogger("incidentflow.notifier")

# A send to a provider, given what to tell the moment the provider has the whole message
# (None without a journal).
Send = Callable[[Handover | None], Awaitable[Delivery]]

# Kept as the provider's id of a send recovered from the journal: the server's reply is lost.
UNCONFIRMED = "unconfirmed: handed to the server, the notifier stopped before its reply"


# Providers that ignore dots in the local part: a.b.c@gmail.com is abc@gmail.com.
DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def recipient_key(address_or_number: str) -> str:
    """What counts notifications to one recipient, whoever the customer: a SHA-256 of the
    mailbox (see ``mailbox``) or of the E.164 number."""
    value = address_or_number.strip()
    return hashlib.sha256(mailbox(value).encode() if "@" in value else value.encode()).hexdigest()


def mailbox(address: str) -> str:
    """The mailbox ``address`` delivers to, as far as a sender can tell: lower-cased, without
    a ``+tag`` (subaddressing: victim+1@ and victim+2@ reach one inbox), and without dots
    where the provider ignores them."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


class NotificationBusy(Exception):
    """Another delivery of the same event is sending this notification right now."""


class SendFailed(Exception):
    """A provider failed to take a notification this time. The message names the channel and
    the error's type only: provider errors may quote addresses, which stay out of logs."""


class NotificationsPending(Exception):
    """Some notifications of an event did not go out on this delivery; a redelivery retries
    them (the ones that did go out are skipped then)."""


class Notifier:
    """Sends each (incident, channel, kind) notification once: a row is claimed with a lease
    before the provider is called, so redeliveries and concurrent consumers skip it."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        mailer: Mailer,
        texts: TextSender,
        settings: NotifierSettings,
        journal: SendJournal | None = None,
    ) -> None:
        self._pool = pool
        self.mailer = mailer
        self.texts = texts
        self.settings = settings
        self.journal = journal
        self._claims = Batcher.pooled(
            pool, partial(store.claim_many, limit=settings.recipient_limit)
        )
        self._records = Batcher.pooled_writes(pool, store.record_delivered_many)

    async def open_journal(self, directory: Path) -> None:
        """Journal this process's sends in ``directory``, having first recorded what a killed
        predecessor handed over there. At start, before anything is consumed."""
        self.journal = SendJournal(directory)
        await self.recover()

    async def close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def recover(self) -> None:
        """Record as sent the messages a notifier that died had handed to a provider without
        recording them (see journal.py)."""
        if self.journal is None:
            return
        with self.journal.left_behind() as entries:
            if not entries:
                return
            async with self._pool().acquire() as conn:
                recovered = await store.record_handed_over(conn, entries, UNCONFIRMED)
        for key in recovered:
            self._log(key, "sent", recovered=True)
        # A warning: it only happens after a notifier died in the middle of sending.
        log.warning(
            "send journal: messages handed over by a stopped notifier recorded as sent",
            extra={"journaled": len(entries), "recovered": len(recovered)},
        )

    async def acknowledge(
        self, view: IncidentView, channels: list[str], phone: str | None, *, final: bool
    ) -> list[str]:
        """Acknowledge on every channel; returns those that reached the customer.

        Every channel is tried even when one fails, so an SMTP outage does not hold back SMS.
        """
        reached: list[str] = []
        errors: list[Exception] = []
        for channel in channels:
            try:
                if channel == "email":
                    status = await self.send_email(view, "ack", final=final)
                else:
                    status = await self.send_text(view, channel, phone, final=final)
            except Exception as exc:
                errors.append(exc)
                continue
            if status in DELIVERED:
                reached.append(channel)
        if errors:
            raise NotificationsPending(
                f"{len(errors)} of {len(channels)} notifications pending: "
                + "; ".join(str(e) for e in errors)
            ) from errors[0]
        return reached

    async def send_email(
        self, view: IncidentView, kind: NotificationKind, *, to: str | None = None, final: bool
    ) -> str:
        key = Key(view.incident_id, "email", kind)
        try:
            email = outgoing_email(
                view,
                kind,
                self.settings.mail_from,
                self.settings.support_address,
                to=to,
                quote=self.settings.quote_message,
            )
        except ValueError as exc:
            return await self._refuse(key, None, "", f"invalid email address: {exc}")
        # Mail to the support team is ours to send as often as it needs.
        limited = None if kind in TEAM_KINDS else recipient_key(email.recipient)
        return await self._deliver(
            key,
            mask_email(email.recipient),
            email.text,
            lambda handover: self.mailer.send(
                email.mail, email.sender, email.recipient, handover=handover
            ),
            final=final,
            recipient_key=limited,
        )

    async def send_text(
        self,
        view: IncidentView,
        channel: str,
        phone: str | None,
        *,
        final: bool,
        kind: NotificationKind = "ack",
    ) -> str:
        key = Key(view.incident_id, channel, kind)
        body = text_message(view, kind)
        if not phone:
            return await self._refuse(key, None, body, "no phone number on the incident")
        try:
            number = to_e164(phone)
        except ValueError as exc:
            return await self._refuse(key, mask_phone(phone), body, f"invalid phone number: {exc}")
        country = phonenumbers.region_code_for_number(phonenumbers.parse(number))
        allowed = self.settings.sms_countries
        if allowed and country not in allowed:
            reason = f"texts to {country} numbers are not sent (NOTIFIER_SMS_COUNTRIES)"
            return await self._suppress(key, mask_phone(number), body, reason)
        text_channel: TextChannel = "whatsapp" if channel == "whatsapp" else "sms"
        return await self._deliver(
            key,
            mask_phone(number),
            body,
            lambda handover: self.texts.send(text_channel, number, body, handover=handover),
            final=final,
            recipient_key=recipient_key(number),
        )

    async def _deliver(
        self,
        key: Key,
        recipient: str | None,
        message: str,
        send: Send,
        *,
        final: bool,
        recipient_key: str | None = None,
    ) -> str:
        """Send once; the notification's status afterwards. Raises when it is to be retried.
        ``recipient_key`` counts the send against its recipient's limit; over it, nothing is
        sent and the notification is recorded ``suppressed``."""
        claim = await self._claims.submit(
            ClaimRequest(key, recipient, message, self.settings.send_lease_seconds, recipient_key)
        )
        if claim.status == "suppressed":
            self._log(key, "suppressed", error="recipient limit")
            return claim.status
        if claim.lease is None:
            if claim.status in DELIVERED or not claim.retryable:
                return claim.status  # done before: a redelivery sends nothing
            raise NotificationBusy(f"{key.channel}/{key.kind} is {claim.status} elsewhere")
        # Shielded: a handler cancelled mid-send (broker connection lost, shutdown) still
        # records what the provider did; else the lease would expire and the mail go twice.
        return await asyncio.shield(self._send_and_record(key, claim.lease, send, final=final))

    async def _send_and_record(self, key: Key, lease: datetime, send: Send, *, final: bool) -> str:
        # Between the provider's answer and the record of it, a crash would leave a sent
        # message looking unsent, and it would go again once the lease ran out. So that
        # moment is kept short: the record goes out the moment the answer is in, in the
        # group commit of the sends that finish with it (one round trip for them all).
        # And the moment the provider has the message is journaled on local disk, so even a
        # crash inside that short window does not send it twice (journal.py).
        journal = self.journal
        handover = JournaledSend(journal, key, lease) if journal else None
        try:
            delivery = await send(handover)
        except PermanentFailure as exc:
            await self._record_failure(key, lease, exc, retryable=False, final=final)
            return "failed"
        except Exception as exc:
            await self._record_failure(key, lease, exc, retryable=True, final=final)
            # Retried with back-off by the delivery policy, then dead-lettered.
            raise SendFailed(f"{key.channel}/{key.kind}: {type(exc).__name__}") from exc
        record = (key, delivery.status, delivery.provider_message_id)
        # Recording must outlast a database restart: give up only well inside the lease, so
        # no other delivery can have claimed the row meanwhile. Whatever the connection did
        # (a server restarting mid-statement surfaces as OSError, PostgresError or asyncpg's
        # InternalClientError alike), the provider has the message: the record is retried,
        # never skipped.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=2),
            stop=stop_after_delay(self.settings.send_lease_seconds / 2),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        ):
            with attempt:
                await self._records.submit(record)
        if journal is not None:
            journal.settled(key)
        self._log(key, delivery.status)
        return delivery.status

    async def _record_failure(
        self, key: Key, lease: datetime, exc: Exception, *, retryable: bool, final: bool
    ) -> None:
        async with self._pool().acquire() as conn:
            await store.record_failure(
                conn, key, lease, repr(exc), retryable=retryable, final=final
            )
        if self.journal is not None:
            self.journal.settled(key)
        self._log(key, "failed" if final or not retryable else "queued", error=type(exc).__name__)

    async def _refuse(self, key: Key, recipient: str | None, message: str, reason: str) -> str:
        async with self._pool().acquire() as conn:
            await store.record_refused(conn, key, recipient, message, reason)
        self._log(key, "failed", error=reason.split(":")[0])
        return "failed"

    async def _suppress(self, key: Key, recipient: str | None, message: str, reason: str) -> str:
        request = ClaimRequest(key, recipient, message, self.settings.send_lease_seconds)
        async with self._pool().acquire() as conn:
            await store.suppress(conn, [request], reason)
        self._log(key, "suppressed", error=reason.split(" (")[0])
        return "suppressed"

    @staticmethod
    def _log(key: Key, status: str, error: str | None = None, *, recovered: bool = False) -> None:
        record_notification(key.channel, key.kind, status)
        # No recipient in the log line: addresses and numbers are customer data.
        log.info(
            "notification %s",
            status,
            extra={
                "incident_id": str(key.incident_id),
                "channel": key.channel,
                "kind": key.kind,
                "status": status,
                "error": error,
                "recovered_from_journal": recovered or None,
            },
        )
