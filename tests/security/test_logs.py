"""No contact data in logs, whatever writes them and however long the line."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest
import uvicorn

from incidentflow.logs import configure_logging
from incidentflow.privacy import mask_text
from tests.incidentflow.test_privacy import json_log

__all__ = ["json_log"]  # the fixture, for pytest


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("ana@münchen.de", "a***@münchen.de"),
        ("иван@пример.рф", "и***@пример.рф"),
        ("bob@xn--mnchen-3ya.de", "b***@xn--mnchen-3ya.de"),
        ("zoë.o'neil+pay@example.co.uk", "z***@example.co.uk"),
    ],
)
def test_internationalised_addresses_are_masked(address: str, masked: str) -> None:
    assert mask_text(f"customer {address} wrote") == f"customer {masked} wrote"


@pytest.mark.parametrize(
    "url",
    [
        "amqp://svc:s3cret@rabbit:5672/",
        "-postgres://u:s3cret@db/x",
        "..amqp://guest:s3cret@rabbit",
        "1.redis://:s3cret@cache",
    ],
)
def test_url_passwords_are_masked_wherever_the_url_starts(url: str) -> None:
    masked = mask_text(f"connecting to {url} failed")
    assert "s3cret" not in masked and ":***@" in masked


def _seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        mask_text(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize(
    "build",
    [
        lambda n: "a." * n + "@x.com",  # a long local part
        lambda n: "x@" + "a" * n,  # a domain that never ends in a label
        lambda n: "a@" * n,  # every character a possible start
        lambda n: "1 " * n + "@",  # digits everywhere, one @ to pass the quick check
    ],
)
def test_masking_takes_time_linear_in_the_length(build: object) -> None:
    """Four times the text takes about four times as long, not sixteen (a quadratic pattern
    took 1.9 s for 20 KB, inside the log filter of every service)."""
    short, long = build(2_000), build(8_000)  # type: ignore[operator]
    ratio = _seconds(long) / max(_seconds(short), 1e-6)
    assert ratio < 9, f"4x the text took {ratio:.1f}x the time"


def test_the_server_access_log_goes_through_the_masking(json_log: Any) -> None:
    # uvicorn sets up its own loggers and handlers when configured, as it is at start, before
    # the service's lifespan configures ours (json_log does as the lifespan does).
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in names
    }
    try:
        uvicorn.Config("services.ingest.app:app", log_level="info").configure_logging()
        configure_logging("ingest")
        (handler,) = logging.getLogger().handlers
        buffer = io.StringIO()
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/1.1" %d',
            "127.0.0.1:5000",
            "GET",
            "/api/incidents?email=ana@example.com&phone=+14155550123",
            200,
        )
    finally:
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
    [line] = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert line["logger"] == "uvicorn.access"
    # "/api/incidents?email=ana" is a valid local part (RFC 5322 atext): masked whole.
    assert "***@example.com" in line["message"] and "ana@example.com" not in line["message"]
    assert "+14155550123" not in line["message"]


def test_the_internal_port_leaves_the_public_access_log_alone() -> None:
    """Setting up ingest's internal server (services/ingest/internal.py) does not empty the
    process-wide access logger the public server writes through."""
    from fastapi import FastAPI

    from services.ingest.internal import internal_config

    access = logging.getLogger("uvicorn.access")
    saved = access.handlers[:], access.propagate
    sentinel = logging.NullHandler()
    try:
        access.handlers[:] = [sentinel]
        access.propagate = True
        config = internal_config(FastAPI(), "127.0.0.1", 9)
        assert config.access_log is False
        assert access.handlers == [sentinel] and access.propagate is True
    finally:
        access.handlers[:], access.propagate = saved
