"""The ticketing step, pure: the TicketSystem protocol, its errors and the local fallback id."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Protocol

from incidentflow.text import neutralised


@dataclass(frozen=True)
class TicketRequest:
    incident_id: uuid.UUID
    category: str
    message: str
    customer_id: str
    sentiment: str
    # ISO 639-1, so the team can route the ticket to someone who reads the language.
    language: str = "en"

    def __post_init__(self) -> None:
        # What the customer typed reaches people in the ticket system: no terminal escapes,
        # no bidirectional tricks (incidentflow.text).
        object.__setattr__(self, "message", neutralised(self.message))
        object.__setattr__(self, "customer_id", neutralised(self.customer_id))

    @property
    def idempotency_key(self) -> str:
        """Derived from the incident: a retried create is recognisably the same create."""
        return f"incident-{self.incident_id}"

    @property
    def subject(self) -> str:
        return f"{self.category.replace('_', ' ').capitalize()} — incident {self.incident_id}"


@dataclass(frozen=True)
class CommentRequest:
    """A customer's follow-up message (a reply mail, a second text) for the incident's ticket."""

    incident_id: uuid.UUID
    ticket_id: str
    # The follow-up's row (incident_messages.id): the same message is the same comment.
    message_id: int
    channel: str  # email / sms / whatsapp / chat
    body: str

    def __post_init__(self) -> None:
        # As TicketRequest.message: what the customer typed, made inert for the people who read
        # the ticket.
        object.__setattr__(self, "body", neutralised(self.body))

    @property
    def idempotency_key(self) -> str:
        """Derived from the message: a retried comment is recognisably the same comment."""
        return f"incident-{self.incident_id}-message-{self.message_id}"

    @property
    def text(self) -> str:
        """What the ticket shows: who wrote again, by which channel, and what."""
        return f"Customer wrote again ({self.channel}):\n\n{self.body}"


class TicketSystem(Protocol):
    """Creates a ticket in the team's ticket system and returns its id; adds comments to it.

    Creating twice with the same ``request.idempotency_key`` returns the first ticket's id.
    ``add_comment`` sends the comment's ``idempotency_key`` where the system honours one.
    Failures raise :class:`TicketSystemError`.
    """

    async def create_ticket(self, request: TicketRequest) -> str: ...

    async def add_comment(self, request: CommentRequest) -> None: ...


class TicketSystemError(RuntimeError):
    """The ticket system did not create the ticket (or add the comment).

    ``retryable``: the same request may succeed later (5xx, 429, transport error, timeout);
    otherwise the system refused it (other 4xx, malformed answer) and retrying is pointless.
    ``retry_after``: seconds the system asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def fallback_ticket_id(incident_id: uuid.UUID) -> str:
    """``TKT-`` and 8 hex digits, stable per incident, so a redelivery gets the same id."""
    return "TKT-" + hashlib.sha256(incident_id.bytes).hexdigest()[:8]
