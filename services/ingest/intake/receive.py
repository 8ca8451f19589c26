"""What every way in shares: one message from a customer becomes an incident, joins one, or
is recorded and ignored, exactly once per message id (docs/adr/0052).

The channels (``smtp.py``, ``twilio.py``) turn what they receive into an :class:`Inbound`;
:meth:`Intake.take_in` stores it in one transaction with its receipt, so a message delivered
twice (a provider retrying, an intake killed after it read and before it answered) finds its
receipt and changes nothing, and one delivered once is never half stored.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from contracts.events import Channel, IncidentMessageReceived, IncidentReceived
from incidentflow.tracing import current_trace_carrier
from services.ingest import store
from services.ingest.intake import store as intake_store
from services.ingest.intake.store import Receipt
from services.ingest.ratelimit import MovingWindow
from services.ingest.settings import IngestSettings

log = logging.getLogger("incidentflow.ingest.intake")

# incidents.customer_id holds at most this many characters (the API's limit too).
CUSTOMER_ID_LENGTH = 64


@dataclass(frozen=True)
class Inbound:
    """One message from a customer, whatever it came by."""

    channel: Channel
    # The id its channel gave it (Message-ID, MessageSid): what makes a second delivery a replay.
    external_id: str
    # The address (mail) or E.164 number (texts) it came from.
    sender: str
    text: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # Mail only: incidents its reply headers name, ticket ids its subject names.
    replies_to: tuple[uuid.UUID, ...] = ()
    ticket_refs: tuple[str, ...] = ()
    # Why it must never be answered (an auto-reply, a bounce, a loop), if so.
    ignore: str | None = None

    @property
    def by_text(self) -> bool:
        return self.channel in ("sms", "whatsapp")


class SenderLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit per sender reached, retry in {retry_after} s")
        self.retry_after = retry_after


def customer_id_for(sender: str) -> str:
    """The sender's own address or number as its customer id; a hash of it when too long."""
    if len(sender) <= CUSTOMER_ID_LENGTH:
        return sender
    return "sender:" + hashlib.sha256(sender.encode()).hexdigest()[:40]


class Intake:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        wake_relay: Callable[[], None],
        settings: IngestSettings,
    ) -> None:
        self._pool = pool
        self._wake_relay = wake_relay
        self._settings = settings
        self._per_sender = MovingWindow(settings.rate_limit_per_customer)

    async def take_in(self, inbound: Inbound) -> Receipt:
        """Store ``inbound``; its receipt. Raises SenderLimited (nothing stored) when its sender
        is over the per-customer limit, and the database's errors as they are."""
        if inbound.ignore is None and (wait := self._per_sender.hit(inbound.sender)) is not None:
            raise SenderLimited(wait)
        async with self._pool().acquire() as conn, conn.transaction():
            await store.lock(conn, f"inbound:{inbound.channel}:{inbound.external_id}")
            earlier = await intake_store.receipt(conn, inbound.channel, inbound.external_id)
            if earlier is not None:
                return earlier
            receipt = await self._store(conn, inbound)
            await intake_store.keep_receipt(conn, inbound.channel, inbound.external_id, receipt)
        if receipt.outcome in ("incident", "message"):
            self._wake_relay()
        log.info(
            "inbound message",
            extra={
                "channel": inbound.channel,
                "outcome": receipt.outcome,
                "incident_id": str(receipt.incident_id) if receipt.incident_id else None,
                "reason": receipt.reason,
            },
        )
        return receipt

    async def _store(self, conn: asyncpg.Connection, inbound: Inbound) -> Receipt:
        if inbound.ignore is not None:
            return Receipt("ignored", None, inbound.ignore)
        # NUL is the one character Postgres text cannot hold; a provider may pass one through.
        text = inbound.text.replace("\x00", "").strip()[: self._settings.max_message_length]
        if not text:
            return Receipt("ignored", None, "no text")
        joined = await self._conversation(conn, inbound)
        if joined is not None:
            message_id, reopened = await intake_store.add_message(
                conn, joined, inbound.channel, inbound.sender, text, inbound.attachments
            )
            later = IncidentMessageReceived(
                incident_id=joined,
                message_id=message_id,
                channel=inbound.channel,
                message=text,
                received_at=datetime.now(UTC),
                reopened=reopened,
                trace=current_trace_carrier(),
            )
            await intake_store.queue_event(conn, later, "added")
            return Receipt("message", joined)
        event = await self._new_incident(conn, inbound, text)
        existing = await store.record_report(
            conn,
            event,
            store.fingerprint(event.message),
            self._settings.duplicate_window_seconds,
        )
        if existing is not None:
            await store.record_repeat_report(conn, existing, event)
            return Receipt("repeat", existing)
        return Receipt("incident", event.incident_id)

    async def _conversation(self, conn: asyncpg.Connection, inbound: Inbound) -> uuid.UUID | None:
        """The incident this message continues, if any."""
        if inbound.by_text:
            return await intake_store.open_incident_of_number(
                conn, inbound.sender, self._settings.intake_text_join_hours
            )
        if not (inbound.replies_to or inbound.ticket_refs):
            return None
        return await intake_store.replied_incident(
            conn, inbound.sender, inbound.replies_to, inbound.ticket_refs
        )

    async def _new_incident(
        self, conn: asyncpg.Connection, inbound: Inbound, text: str
    ) -> IncidentReceived:
        if inbound.by_text:
            known = await intake_store.customer_for_number(conn, inbound.sender)
        else:
            known = await intake_store.customer_for_address(conn, inbound.sender)
        return IncidentReceived(
            incident_id=uuid.uuid4(),
            customer_id=known or customer_id_for(inbound.sender),
            channel=inbound.channel,
            message=text,
            # A text's incident has no address: its answers go back by text.
            email="" if inbound.by_text else inbound.sender,
            phone=inbound.sender if inbound.by_text else None,
            created_at=datetime.now(UTC),
            trace=current_trace_carrier(),
        )
