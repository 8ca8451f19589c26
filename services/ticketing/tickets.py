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


class TicketSystem(Protocol):
    """Creates a ticket in the team's ticket system and returns its id.

    Creating twice with the same ``request.idempotency_key`` returns the first ticket's id.
    Failures raise :class:`TicketSystemError`.
    """

    async def create_ticket(self, request: TicketRequest) -> str: ...


class TicketSystemError(RuntimeError):
    """The ticket system did not create the ticket.

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
