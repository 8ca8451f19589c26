"""The HTTP API's request and response bodies (OpenAPI is generated from these)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from contracts.events import Category, Channel, Sentiment
from incidentflow.phone import to_e164
from incidentflow.text import has_hidden_characters

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def storable_text(value: Any) -> Any:
    """Text Postgres can keep: no NUL character and no lone surrogate (neither is UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


class StorableModel(BaseModel):
    """A request body whose every string can be stored as it came."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable_text(value)


class IncidentRequest(StorableModel):
    """A customer's message, as the seed's curl examples send it."""

    # pydantic v2 never turns a number into a string: `"customer_id": 99876` is a 422.
    model_config = ConfigDict(extra="ignore")

    customer_id: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
    ]
    message: NonBlank
    channel: Channel
    email: EmailStr
    phone: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="International form, stored as E.164, e.g. +14155550123"
    )

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else to_e164(value)

    @field_validator("customer_id")
    @classmethod
    def _visible(cls, value: str) -> str:
        # An identifier is copied into tickets, logs and terminals: nothing hidden in it.
        if has_hidden_characters(value):
            raise ValueError("must not contain control, format or bidirectional characters")
        return value


class IncidentCreated(BaseModel):
    """The seed's response fields; ticket and classification are null while still processing."""

    incident_id: uuid.UUID
    ticket_id: str | None
    status: Literal["open", "resolved"]
    classification: Category | None
    confidence: float | None
    message: str
    duplicate: bool = Field(
        False,
        description="present and true only when the customer already reported this: "
        "linked to that incident",
    )
    duplicate_of: uuid.UUID | None = Field(None, description="the incident this repeat joined")


class Notification(BaseModel):
    channel: str
    kind: str
    recipient: str | None
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None


class ReminderState(BaseModel):
    kind: str
    due_at: datetime
    state: str
    attempts: int


class AuditEntry(BaseModel):
    service: str
    event_name: str
    event_id: uuid.UUID
    occurred_at: datetime
    recorded_at: datetime
    outcome: str | None


class Correction(BaseModel):
    previous: Category | None
    corrected: Category
    agent: str
    note: str | None
    created_at: datetime


class CorrectionRequest(StorableModel):
    """An agent's verdict on the category; kept for audit and for retraining. Who gave it is
    the authenticated caller, never a name in the body (extra fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class IncidentSummary(BaseModel):
    incident_id: uuid.UUID
    customer_id: str
    channel: Channel
    status: Literal["open", "resolved"]
    sentiment: Sentiment | None
    polarity: float | None
    language: str | None = Field(None, description="ISO 639-1, once scored")
    classification: Category | None
    confidence: float | None
    ticket_id: str | None
    needs_review: bool
    created_at: datetime
    resolved_at: datetime | None


class Attachment(BaseModel):
    filename: str
    content_type: str
    size: int = Field(description="bytes; 0 when the provider did not say")


class ConversationMessage(BaseModel):
    """One message of the incident's conversation: the customer's (``in``) or ours (``out``)."""

    direction: Literal["in", "out"]
    channel: str
    body: str
    at: datetime
    attachments: list[Attachment] = Field(description="listed, never stored")
    kind: str | None = Field(None, description="out: ack, reminder")
    status: str | None = Field(None, description="out: the notification's status")
    language: str | None = Field(None, description="in: once scored")
    sentiment: Sentiment | None = Field(None, description="in: once scored")


class IncidentState(IncidentSummary):
    """Everything known about one incident."""

    message: str
    reason: str | None
    classifier_model: str | None
    ticket_fallback: bool | None
    reminder_sent: bool
    repeat_reports: int = Field(0, description="times the customer reported it again")
    scored_at: datetime | None
    classified_at: datetime | None
    ticketed_at: datetime | None
    acknowledged_at: datetime | None
    notifications: list[Notification]
    reminder: ReminderState | None
    reminders: list[ReminderState]
    corrections: list[Correction]
    sentiment_trend: Literal["worsening", "improving", "steady"] | None = Field(
        None,
        description="how the customer's mood moved from the first message to the latest "
        "later one scored; null before the customer writes again",
    )
    messages: list[ConversationMessage] = Field(
        description="the conversation in order: the first message, the customer's later "
        "messages (mail replies, texts), and what was sent to the customer"
    )
    audit: list[AuditEntry]


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    next_cursor: str | None


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["resolved", "open"]


class Stats(BaseModel):
    total: int
    by_status: dict[str, int]
    by_category: dict[str, int]
    by_sentiment: dict[str, int]
    by_language: dict[str, int]
    reminders_sent: int
    needs_review: int
    corrections: int
    notifications: dict[str, dict[str, int]]
    notifications_by_status: dict[str, int]
    notifications_retried: int = Field(description="notifications that took more than 1 attempt")
    repeat_reports: int
    dead_letters: dict[str, int] | None = Field(
        description="messages in each dead-letter queue; null when the broker is unreachable"
    )


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """422: every field that is wrong, and why."""

    detail: list[ValidationIssue]


class Problem(BaseModel):
    """Any other error: what went wrong, in words."""

    detail: str
