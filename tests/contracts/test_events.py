"""Event contracts: envelope, versioned routing keys, stable ids, old messages still parse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.events import (
    IncidentReceived,
    IncidentScored,
    IncidentTicketed,
    ReminderDue,
    derived_event_id,
)

RECEIVED = IncidentReceived(
    incident_id=uuid.uuid4(),
    customer_id="99876",
    channel="email",
    message="charged twice",
    email="a@example.com",
    created_at=datetime.now(UTC),
)


def test_routing_keys_name_their_version() -> None:
    assert IncidentReceived.routing_key() == "incident.received.v1"
    assert IncidentTicketed.routing_key() == "incident.ticketed.v1"
    assert ReminderDue.routing_key() == "reminder.due.v1"


def test_envelope_round_trips_through_json() -> None:
    again = IncidentReceived.model_validate_json(RECEIVED.model_dump_json())
    assert again == RECEIVED
    assert again.schema_version == 1 and again.event_id and again.occurred_at


def test_events_are_frozen() -> None:
    with pytest.raises(ValidationError):
        RECEIVED.message = "changed"  # type: ignore[misc]


def test_derived_event_ids_are_stable_per_incident_and_step() -> None:
    incident = uuid.uuid4()
    assert derived_event_id(incident, "scored") == derived_event_id(incident, "scored")
    assert derived_event_id(incident, "scored") != derived_event_id(incident, "classified")
    assert derived_event_id(incident, "scored") != derived_event_id(uuid.uuid4(), "scored")


def test_a_v1_message_written_today_keeps_parsing() -> None:
    # A literal v1 payload: additive changes to the models must keep accepting it.
    payload = (
        '{"event_id": "0b9f4c44-3d5e-4d8b-9c0e-1f2a3b4c5d6e",'
        ' "incident_id": "e5f7a2b1-4c8d-4e6f-8a9b-0c1d2e3f4a5b",'
        ' "occurred_at": "2025-11-09T10:30:00Z", "schema_version": 1, "trace": {},'
        ' "customer_id": "99876", "channel": "email",'
        ' "message": "My credit card payment was deducted twice yesterday.",'
        ' "email": "customer@example.com", "phone": null,'
        ' "created_at": "2025-11-09T10:30:00Z", "sentiment": "negative", "polarity": -0.57}'
    )
    event = IncidentScored.model_validate_json(payload)
    assert event.sentiment == "negative" and event.channel == "email"
    # Written before sentiment detected languages: taken as English, as replies fall back to.
    assert event.language == "en"


def test_language_is_an_iso_639_1_code() -> None:
    scored = {**RECEIVED.model_dump(), "sentiment": "unknown", "polarity": 0.0}
    assert IncidentScored.model_validate({**scored, "language": "es"}).language == "es"
    for wrong in ("spanish", "ES", "e", ""):
        with pytest.raises(ValidationError):
            IncidentScored.model_validate({**scored, "language": wrong})


def test_unknown_category_or_channel_is_rejected() -> None:
    with pytest.raises(ValidationError):
        IncidentReceived.model_validate({**RECEIVED.model_dump(), "channel": "fax"})
