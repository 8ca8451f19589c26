"""Incident events: one frozen pydantic model per event, each with the common envelope.

Changes are additive. A breaking change is a new model with a new ``schema_version`` and a new
routing key beside the old one, never an edit of a published one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["email", "chat", "sms", "whatsapp"]
# "unknown": the message is in a language sentiment has no method for; a person reads it.
Sentiment = Literal["negative", "neutral", "positive", "unknown"]
Category = Literal[
    "duplicate_payment",
    "failed_payment",
    "fraud_report",
    "refund_request",
    "account_locked",
    "statement_error",
    "other",
]
CATEGORIES: tuple[Category, ...] = (
    "duplicate_payment",
    "failed_payment",
    "fraud_report",
    "refund_request",
    "account_locked",
    "statement_error",
    "other",
)
NotificationKind = Literal["ack", "reminder", "escalation"]

# Namespace for deterministic event ids: a step that handles the same input twice emits the
# same event_id, so the next consumer recognises the duplicate.
_EVENT_NAMESPACE = uuid.UUID("6f1c1d2e-8a53-4c39-9a57-2f6f0c1e9b11")


def derived_event_id(incident_id: uuid.UUID, step: str) -> uuid.UUID:
    """The event id a step emits for an incident: stable across redeliveries."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{incident_id}:{step}")


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Envelope carried by every message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: ClassVar[str]
    version: ClassVar[int] = 1
    # Work events must reach a queue (an unroutable publish is an error); pure notifications
    # may have no listener at the moment (ingest's transient queues come and go).
    requires_listener: ClassVar[bool] = True

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=_now)
    schema_version: int = 1
    # W3C trace context (traceparent / tracestate), so one incident is one trace.
    trace: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def routing_key(cls) -> str:
        return f"{cls.name}.v{cls.version}"


class Event(Envelope):
    """Something that happened to one incident: the envelope plus the incident's id."""

    incident_id: uuid.UUID


NextEvent = TypeVar("NextEvent", bound="IncidentReceived")


class IncidentReceived(Event):
    """Ingest accepted a customer message."""

    name: ClassVar[str] = "incident.received"

    customer_id: str
    channel: Channel
    message: str
    email: str
    phone: str | None = None
    created_at: datetime

    def next_step(self, event: type[NextEvent], step: str, **found: Any) -> NextEvent:
        """The event the incident's next step publishes: everything this one carries (its
        trace included), what ``step`` found, and an id derived from the incident and the
        step, the same on every retry."""
        return event(
            **self.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(self.incident_id, step),
            **found,
        )


class IncidentMessageReceived(Event):
    """The customer wrote again on an incident (a reply mail, another text): scored by
    sentiment, added to the ticket by ticketing, and the follow-up's clock restarted."""

    name: ClassVar[str] = "incident.message_received"

    # incident_messages.id: what each step's write is keyed on.
    message_id: int
    channel: Channel
    message: str
    received_at: datetime
    # The message reopened a resolved incident.
    reopened: bool = False


class IncidentScored(IncidentReceived):
    """Sentiment scored the message."""

    name: ClassVar[str] = "incident.scored"

    sentiment: Sentiment
    polarity: float
    # Added in place (additive, defaulted): the message's language, ISO 639-1.
    language: str = Field("en", pattern=r"^[a-z]{2}$")


class IncidentClassified(IncidentScored):
    """Classifier put the incident in one of the seven categories."""

    name: ClassVar[str] = "incident.classified"

    classification: Category
    confidence: float
    reason: str
    classifier_model: str
    # Added in place (additive, defaulted): confidence below the review threshold.
    needs_review: bool = False


class IncidentTicketed(IncidentClassified):
    """Ticketing opened (or fell back to a local id for) the ticket."""

    name: ClassVar[str] = "incident.ticketed"

    ticket_id: str
    ticket_fallback: bool


class IncidentAcknowledged(Event):
    """Notifier told the customer that the incident was received."""

    name: ClassVar[str] = "incident.acknowledged"
    requires_listener: ClassVar[bool] = False

    ticket_id: str
    channels: list[str]


class ReminderDue(Event):
    """A scheduled follow-up reached its due time (delivered through the delay queues)."""

    name: ClassVar[str] = "reminder.due"

    reminder_id: int
    kind: str
    due_at: datetime


class ReminderRequested(Event):
    """Reminder found the incident still open and asks notifier to follow up."""

    name: ClassVar[str] = "reminder.requested"

    reminder_id: int
    kind: str
    ticket_id: str
    email: str
    message: str
    created_at: datetime


class ReminderTick(Envelope):
    """Reminders due by ``due_at`` are to be fired now (delivered through the delay queues).

    One tick stands for every reminder due in its slot of time, so the broker carries one
    delayed message per slot instead of one per reminder; the reminders table says which
    reminders those are. A tick also fires any older reminder still waiting.
    """

    name: ClassVar[str] = "reminder.tick"

    due_at: datetime
