"""What the notifier's steps pass between them: the incident a message may mention, the key of
a notification, the claims on it and the limit per recipient. A module of its own so that
composing, the store and the send journal share these without importing each other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from contracts.events import NotificationKind
from services.notifier.translations import ENGLISH


@dataclass(frozen=True)
class IncidentView:
    """What a customer-facing message may mention about an incident."""

    incident_id: uuid.UUID
    ticket_id: str
    message: str
    email: str
    channel: str
    created_at: datetime
    language: str = ENGLISH  # ISO 639-1, as sentiment detected it
    # E.164; what a follow-up by text goes to when the incident came in by text.
    phone: str | None = None


DELIVERED = ("sent", "logged")


@dataclass(frozen=True)
class Key:
    incident_id: uuid.UUID
    channel: str
    kind: NotificationKind


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to claim a notification for sending.

    ``lease`` is set when this delivery owns the row: its lease_until, which also serves as
    the claim's token (a later claim after expiry has another).
    """

    status: str
    lease: datetime | None
    retryable: bool = True

    @property
    def owned(self) -> bool:
        return self.lease is not None


@dataclass(frozen=True)
class ClaimRequest:
    key: Key
    recipient: str | None
    message: str
    lease_seconds: int
    # Counts against the limit of one recipient (``recipient_key``); None: not limited.
    recipient_key: str | None = None


@dataclass(frozen=True)
class RecipientLimit:
    """At most ``amount`` notifications to one recipient in any ``window_seconds``."""

    amount: int
    window_seconds: int

    @property
    def reason(self) -> str:
        return f"recipient limit: {self.amount} in {self.window_seconds} s reached"


# A send's outcome to keep: the notification, its status, the provider's id for it.
Delivered = tuple[Key, str, str | None]
