"""No customer email or phone number reaches a log line, whatever the caller passes."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidentflow.logs import configure_logging
from incidentflow.privacy import _mask_contacts, mask_email, mask_phone, mask_text

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"write to {EMAIL}.", "write to j***@example.com."),
        (f"call {PHONE} now", "call +44***58 now"),
        ("or (415) 555-0123", "or (41***23"),
        ("mobile 07911 123456", "mobile 079***56"),
        ("amqp://svc:s3cret@rabbit:5672/", "amqp://svc:***@rabbit:5672/"),
    ],
)
def test_contact_data_in_free_text_is_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "incident 550e8400-e29b-41d4-a716-446655440000",
        "ticket TKT-12345678",
        "at 2024-05-01T12:00:00+00:00",
        "polarity 0.853456712",
        "client 192.168.100.200",
        "amount 1,234,567.89 EUR",
        "attempt 3 of 10",
    ],
)
def test_ids_dates_and_numbers_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


@given(st.text() | st.text(alphabet="0123456789 .()-+@xy:/_"))
def test_the_quick_check_never_skips_what_the_patterns_would_mask(text: str) -> None:
    assert mask_text(text) == _mask_contacts(text)


def test_mask_email_and_phone_match_the_notifier_forms() -> None:
    assert mask_email("customer@example.com") == "c***@example.com"
    assert mask_phone("+14155550123") == "+14***23"


@given(st.emails())
def test_any_email_address_is_masked(address: str) -> None:
    # Whole, as mask_email masks it: only the first character of the local part shows (which
    # is all of it for a one-character local part, so "address not in" cannot be the test).
    assert mask_text(f"from {address} today") == f"from {mask_email(address)} today"


@given(
    st.lists(st.integers(0, 9), min_size=7, max_size=15).map(
        lambda digits: "+" + "".join(map(str, digits))
    ),
    st.sampled_from(["", " ", "-"]),
)
def test_any_international_number_is_masked(number: str, separator: str) -> None:
    spaced = number[:3] + separator + number[3:]
    assert number[3:-2] not in mask_text(f"sms to {spaced}, thanks").replace(separator, "")


@given(st.uuids())
def test_uuids_are_never_mistaken_for_phones(value: uuid.UUID) -> None:
    assert mask_text(f"incident {value}") == f"incident {value}"


@pytest.fixture
def json_log() -> Iterator[Any]:
    """configure_logging as a service calls it; yields a reader of the JSON lines written."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    faststream = logging.getLogger("faststream")
    saved_faststream = faststream.handlers[:], faststream.propagate, faststream.level
    configure_logging("test-service", "INFO")
    # The service's own handler, writing to a buffer instead of stdout.
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    try:
        yield lines
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        faststream.handlers[:], faststream.propagate, level = saved_faststream
        faststream.setLevel(level)


def test_logs_mask_message_args_extra_fields_and_exceptions(json_log: Any) -> None:
    log = logging.getLogger("incidentflow.test")
    try:
        raise ValueError(f"twilio refused {PHONE}")
    except ValueError:
        log.exception(
            "notified %s",
            EMAIL,
            extra={
                "incident_id": "550e8400-e29b-41d4-a716-446655440000",
                "to": EMAIL,
                "errors": [{"loc": ["email"], "input": {"email": EMAIL, "phone": PHONE}}],
                "attempt": 2,
            },
        )
    log.info(f"customer {EMAIL} wrote")
    first, second = json_log()
    output = json.dumps([first, second])
    assert EMAIL not in output and "7946" not in output
    assert first["message"] == "notified j***@example.com"
    assert first["to"] == "j***@example.com"
    assert first["errors"] == [
        {"loc": ["email"], "input": {"email": "j***@example.com", "phone": "+44***58"}}
    ]
    assert "ValueError: twilio refused +44***58" in first["exc_info"]
    assert first["incident_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert first["attempt"] == 2 and first["service"] == "test-service"
    assert second["message"] == "customer j***@example.com wrote"


def test_faststream_logs_go_through_the_same_masking(json_log: Any) -> None:
    logging.getLogger("faststream").warning("consumer failed on %s", EMAIL)
    logging.getLogger("incidentflow.broker").error("message from %s", PHONE)
    lines = json_log()
    assert [line["message"] for line in lines] == [
        "consumer failed on j***@example.com",
        "message from +44***58",
    ]
