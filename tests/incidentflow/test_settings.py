"""Shared settings: secrets from the environment or files only; production refuses defaults."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from incidentflow.settings import CommonSettings
from incidentflow_tools.stack import REPO_ROOT, SERVICES
from services.classifier.settings import ClassifierSettings
from services.console.settings import ConsoleSettings
from services.notifier.settings import NotifierSettings
from services.sentiment.settings import SentimentSettings
from services.ticketing.settings import TicketingSettings
from tests.settings_classes import SERVICE_SETTINGS

# The six services' and the support console's (a process of services/ as they are).
SETTINGS = [*SERVICE_SETTINGS, ConsoleSettings]
REAL_BROKER = "amqp://sentiment:Xk3-long-secret@rabbit.internal:5672/incidentflow"
REAL_DATABASE = "postgresql://sentiment:Pg-long-secret@db.internal:5432/incidentflow"
# Ingest's own production rule (another check than ours): it must not run without API keys.
PRODUCTION_EXTRAS = {
    "INGEST_API_KEYS": f"ci:submit:{hashlib.sha256(b'key').hexdigest()}",
    "INGEST_API_KEY_SECRET": "a-long-server-secret",
    "CONSOLE_SESSION_SECRET": "another-long-server-secret",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only what a test sets: no broker/database URLs of the test run, no real secrets dir."""
    for name in list(os.environ):
        if name in {"ENV", "RABBITMQ_URL", "DATABASE_URL"} or name.endswith("_FILE"):
            monkeypatch.delenv(name)
    empty = tmp_path / "no-secrets"
    empty.mkdir()
    monkeypatch.setenv("SECRETS_DIR", str(empty))
    yield


def test_every_service_settings_class_is_a_common_settings() -> None:
    found = {
        cls
        for path in sorted((REPO_ROOT / "services").glob("*/settings.py"))
        for _, cls in inspect.getmembers(
            importlib.import_module(f"services.{path.parent.name}.settings"), inspect.isclass
        )
        if issubclass(cls, BaseSettings) and cls.__module__.startswith("services.")
    }
    assert found == set(SETTINGS)
    assert all(issubclass(cls, CommonSettings) for cls in found)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_production_refuses_the_default_broker_credentials(
    settings: type[CommonSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", "production")
    for name, value in PRODUCTION_EXTRAS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="RABBITMQ_URL") as refused:
        settings()
    assert "guest:guest" not in str(refused.value)  # the error never echoes a URL


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_production_refuses_a_database_url_without_password(
    settings: type[CommonSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("RABBITMQ_URL", REAL_BROKER)
    for name, value in PRODUCTION_EXTRAS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        settings()


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_production_accepts_real_credentials(
    settings: type[CommonSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("RABBITMQ_URL", REAL_BROKER)
    monkeypatch.setenv("DATABASE_URL", REAL_DATABASE)
    for name, value in PRODUCTION_EXTRAS.items():
        monkeypatch.setenv(name, value)
    loaded = settings()
    assert (loaded.rabbitmq_url, loaded.database_url) == (REAL_BROKER, REAL_DATABASE)


@pytest.mark.parametrize("env", ["development", "test"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_development_and_test_accept_the_defaults(
    settings: type[CommonSettings], env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", env)
    assert settings().rabbitmq_url == "amqp://guest:guest@localhost:5672/"


@pytest.mark.parametrize(
    "broker",
    [
        "amqp://localhost:5672/",  # the client then logs in as guest:guest
        "amqp://sentiment@rabbit:5672/",
        "amqp://guest:a-long-secret@rabbit:5672/",
        "amqps://svc:guest@rabbit:5671/",
    ],
)
def test_production_refuses_every_form_of_default_broker_login(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("RABBITMQ_URL", broker)
    monkeypatch.setenv("DATABASE_URL", REAL_DATABASE)
    with pytest.raises(ValidationError, match="RABBITMQ_URL"):
        CommonSettings()


def test_a_setting_is_read_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db").write_text(REAL_DATABASE + "\n")
    (tmp_path / "token").write_text("ticket-token\n")
    (tmp_path / "gemini").write_text("gemini-key")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("TICKETING_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("GEMINI_API_KEY_FILE", str(tmp_path / "gemini"))
    assert CommonSettings().database_url == REAL_DATABASE
    token = TicketingSettings().token
    assert token is not None and token.get_secret_value() == "ticket-token"
    gemini = ClassifierSettings().gemini_api_key
    assert gemini is not None and gemini.get_secret_value() == "gemini-key"


def test_production_accepts_credentials_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broker").write_text(REAL_BROKER)
    (tmp_path / "db").write_text(REAL_DATABASE)
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("RABBITMQ_URL_FILE", str(tmp_path / "broker"))
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    assert SentimentSettings().rabbitmq_url == REAL_BROKER


def test_a_value_and_its_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "db").write_text(REAL_DATABASE)
    monkeypatch.setenv("DATABASE_URL", REAL_DATABASE)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    with pytest.raises(SettingsError, match="DATABASE_URL and DATABASE_URL_FILE"):
        CommonSettings()


def test_an_unreadable_file_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITMQ_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="RABBITMQ_URL_FILE: cannot read"):
        CommonSettings()


def test_secrets_dir_files_are_read_below_env_and_file_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "rabbitmq_url").write_text(REAL_BROKER + "\n")
    (secrets / "DATABASE_URL").write_text("postgresql://from-dir:pw@db/x")
    (secrets / "smtp_password").write_text("smtp-secret")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    loaded = NotifierSettings()
    assert loaded.rabbitmq_url == REAL_BROKER
    assert loaded.database_url == "postgresql://from-dir:pw@db/x"
    assert loaded.smtp_password is not None
    assert loaded.smtp_password.get_secret_value() == "smtp-secret"
    assert loaded.secrets_dir == secrets

    (tmp_path / "db").write_text(REAL_DATABASE)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    assert CommonSettings().database_url == REAL_DATABASE
    monkeypatch.setenv("RABBITMQ_URL", "amqp://env:pw@rabbit/")
    assert CommonSettings().rabbitmq_url == "amqp://env:pw@rabbit/"


def test_a_missing_secrets_dir_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="SECRETS_DIR"):
        CommonSettings()


@pytest.mark.parametrize("service", list(SERVICES))
def test_each_service_process_refuses_to_start_in_production_on_defaults(
    service: str, tmp_path: Path
) -> None:
    module = SERVICES[service].split(":")[0]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"RABBITMQ_URL", "DATABASE_URL"} and not key.endswith("_FILE")
    }
    env |= {"ENV": "production", "SECRETS_DIR": str(tmp_path), **PRODUCTION_EXTRAS}
    started = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert "ENV=production refuses RABBITMQ_URL" in started.stderr
