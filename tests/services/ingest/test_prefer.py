"""``Prefer: wait=N`` parsing (RFC 7240) and the cursor format."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.exceptions import RequestValidationError

from services.ingest.app import wait_window
from services.ingest.cursors import decode_cursor, encode_cursor
from services.ingest.settings import IngestSettings

SETTINGS = IngestSettings(wait_seconds=10, max_wait_seconds=60)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 10),
        ("", 10),
        ("wait=0", 0),
        ("wait=3", 3),
        ("respond-async, wait=5", 5),
        ("WAIT = 2.5", 2.5),
        ("wait=600", 60),
        ("handling=lenient", 10),
    ],
)
def test_wait_window(header: str | None, seconds: float) -> None:
    assert wait_window(header, SETTINGS) == seconds


def test_cursor_round_trip() -> None:
    now, ident = datetime.now(UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(now, ident)) == (now, ident)


def test_garbage_cursor_is_a_validation_error() -> None:
    with pytest.raises(RequestValidationError):
        decode_cursor("not-a-cursor")
