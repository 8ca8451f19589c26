"""Production refuses someone's default credentials in any URL it is given."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from incidentflow.settings import CommonSettings
from services.ticketing.settings import TicketingSettings

REAL_BROKER = "amqp://sentiment:Xk3-long-secret@rabbit.internal:5672/incidentflow"
REAL_DATABASE = "postgresql://sentiment:Pg-long-secret@db.internal:5432/incidentflow"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only what a test sets: no URLs of the test run, no real secrets directory."""
    for name in list(os.environ):
        if name in {"ENV", "RABBITMQ_URL", "DATABASE_URL"} or name.endswith("_FILE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    yield


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("RABBITMQ_URL", "amqp://gu%65st:a-long-secret@rabbit:5672/"),  # percent-encoded guest
        ("RABBITMQ_URL", "amqp://svc:svc@rabbit:5672/"),  # the password is the user
        ("RABBITMQ_URL", "amqp://admin:a-long-secret@rabbit:5672/"),
        ("RABBITMQ_URL", "amqp://svc:@rabbit:5672/"),  # an empty password
        ("DATABASE_URL", "postgresql://incidentflow:incidentflow@db:5432/incidentflow"),
        ("DATABASE_URL", "postgresql://postgres:postgres@db:5432/incidentflow"),
        ("DATABASE_URL", "postgresql://svc:Postgres@db:5432/incidentflow"),
        ("DATABASE_URL", "postgresql://db:5432/incidentflow"),
    ],
)
def test_production_refuses_known_credentials_in_every_url(
    variable: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("RABBITMQ_URL", REAL_BROKER)
    monkeypatch.setenv("DATABASE_URL", REAL_DATABASE)
    monkeypatch.setenv(variable, url)
    with pytest.raises(ValidationError, match=f"refuses {variable}") as refused:
        CommonSettings()
    assert url not in str(refused.value)


def test_production_refuses_known_credentials_in_a_service_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any URL setting with a user in it is checked, not only the broker's and database's."""
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("RABBITMQ_URL", REAL_BROKER)
    monkeypatch.setenv("DATABASE_URL", REAL_DATABASE)
    monkeypatch.setenv("TICKETING_BACKEND", "rest")
    monkeypatch.setenv("TICKETING_URL", "https://admin:admin@tickets.internal/api/tickets")
    with pytest.raises(ValidationError, match="refuses TICKETING_URL"):
        TicketingSettings()
