"""The ticketing step, pure: the TicketSystem protocol and the local fallback id."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TicketRequest:
    incident_id: uuid.UUID
    category: str
    message: str
    customer_id: str
    sentiment: str

    @property
    def idempotency_key(self) -> str:
        """Derived from the incident: a retried create is recognisably the same create."""
        return f"incident-{self.incident_id}"


class TicketSystem(Protocol):
    """Creates a ticket in the team's ticket system and returns its id."""

    async def create_ticket(self, request: TicketRequest) -> str: ...


def fallback_ticket_id(incident_id: uuid.UUID) -> str:
    """``TKT-`` and 8 hex digits, stable per incident, so a redelivery gets the same id."""
    return "TKT-" + hashlib.sha256(incident_id.bytes).hexdigest()[:8]
