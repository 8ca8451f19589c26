"""Settings every service shares; each service extends this with its own prefixed class.

Values come from the environment, from ``<NAME>_FILE`` (a file holding the value) or from a
file named like the variable in SECRETS_DIR, in that order of precedence; nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_DATABASE_URL = "postgresql://localhost:5432/incidentflow"
# Where Docker (compose, swarm) mounts secrets; Kubernetes mounts wherever SECRETS_DIR says.
DEFAULT_SECRETS_DIR = Path("/run/secrets")


def _unprefixed(name: str) -> AliasChoices:
    # Shared settings keep one name across services, whatever the service's prefix.
    return AliasChoices(name)


class SecretFileSettingsSource(EnvSettingsSource):
    """``<NAME>_FILE=/path``: setting NAME is the content of that file, for any setting.

    The convention of the official Postgres and RabbitMQ images, so one secret mount works
    for them and for us; the value never sits in the process environment.
    """

    def __call__(self) -> dict[str, Any]:
        # Files are read up front: errors raised here reach the operator as they are, while
        # pydantic-settings rewraps those of get_field_value into a generic message.
        self._contents: dict[str, str] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            for _, env_name, _ in self._extract_field_info(field, field_name):
                self._read(env_name)
        return super().__call__()

    def _read(self, env_name: str) -> None:
        file_variable = self._apply_case_sensitive(f"{env_name}_FILE")
        path = self.env_vars.get(file_variable)
        if path is None:
            return
        if self.env_vars.get(env_name) is not None:
            raise SettingsError(
                f"{env_name.upper()} and {file_variable.upper()} are both set: set one"
            )
        try:
            # Editors and `echo` add a final newline that is never part of a secret.
            self._contents[env_name] = Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"{file_variable.upper()}: cannot read {path}: {exc.strerror}"
            ) from None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        field_key = field_name
        for field_key, env_name, value_is_complex in self._extract_field_info(field, field_name):
            if env_name in self._contents:
                return self._contents[env_name], field_key, value_is_complex
        return None, field_key, False


class _SecretsLocation(BaseSettings):
    """SECRETS_DIR alone: it must be known before the other settings are read."""

    model_config = SettingsConfigDict(extra="ignore")

    secrets_dir: Path | None = Field(None, validation_alias="SECRETS_DIR")


def secrets_dir() -> Path | None:
    """SECRETS_DIR when set (it must then exist), else /run/secrets when it exists."""
    configured = _SecretsLocation().secrets_dir
    if configured is None:
        return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None
    if not configured.is_dir():
        raise SettingsError(f"SECRETS_DIR: {configured} is not a directory")
    return configured


# Users and passwords that are someone's default: the servers' images, this project's own
# examples (compose, .env.example, the example Secret) and the usual first guesses.
KNOWN_CREDENTIALS = frozenset({"guest", "incidentflow", "postgres", "admin"})


def known_credentials(url: str) -> str | None:
    """Why ``url``'s credentials are someone's default (None when they are not): no password,
    a user or password that is a known default, or a password equal to the user. Both are
    percent-decoded first, so ``gu%65st`` is ``guest``."""
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if not password:
        return "no password"
    if user.lower() in KNOWN_CREDENTIALS or password.lower() in KNOWN_CREDENTIALS:
        return "a default user or password"
    if password == user:
        return "a password equal to the user"
    return None


def _default_credentials_refused(name: str, what: str) -> ValueError:
    # Names the variable, never the value: the value may hold a password.
    return ValueError(
        f"ENV=production refuses {name} with {what}: set {name} (or {name}_FILE, or a file "
        f"{name.lower()} in SECRETS_DIR) to credentials of this service's own user"
    )


class CommonSettings(BaseSettings):
    """Connection and runtime settings shared by all six services."""

    # Validation errors never echo input: a rejected URL may carry a password.
    model_config = SettingsConfigDict(extra="ignore", env_file=None, hide_input_in_errors=True)

    env: Literal["development", "test", "production"] = Field(
        "development", validation_alias=_unprefixed("ENV")
    )
    rabbitmq_url: str = Field(DEFAULT_RABBITMQ_URL, validation_alias=_unprefixed("RABBITMQ_URL"))
    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_unprefixed("DATABASE_URL"))
    log_level: str = Field("INFO", validation_alias=_unprefixed("LOG_LEVEL"))
    db_pool_size: int = Field(5, ge=1, le=100, validation_alias=_unprefixed("DB_POOL_SIZE"))
    # Unacked messages per consumer; bounded so one slow step cannot hoard a queue.
    prefetch: int = Field(50, ge=1, le=1000)
    migrate_on_start: bool = Field(True, validation_alias=_unprefixed("MIGRATE_ON_START"))
    # Declare the shared broker topology (exchanges, delay levels, dead-letter queues) at
    # start; false where the administrator declared it (`incidentflow provision-roles`) and
    # each service's own broker user may not.
    declare_topology: bool = Field(True, validation_alias=_unprefixed("DECLARE_TOPOLOGY"))
    # How long a starting service waits for Postgres and RabbitMQ before it gives up and exits.
    startup_wait_seconds: float = Field(
        60.0, ge=0, le=3600, validation_alias=_unprefixed("STARTUP_WAIT_SECONDS")
    )
    # OTLP/HTTP collector base URL (the standard OpenTelemetry variable); unset: no export.
    otel_exporter_otlp_endpoint: str | None = Field(
        None, validation_alias=_unprefixed("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    # Personal data of incidents resolved longer ago than this is erased by
    # `incidentflow erase --expired`, which a scheduled job runs (docs/security.md).
    retention_days: int = Field(365, ge=1, le=36500, validation_alias=_unprefixed("RETENTION_DAYS"))
    # Read by settings_customise_sources through secrets_dir(); a field so it is documented
    # and shown like every other setting.
    secrets_dir: Path | None = Field(
        default_factory=secrets_dir, validation_alias=_unprefixed("SECRETS_DIR")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            SecretFileSettingsSource(settings_cls),
            SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir()),
        )

    @model_validator(mode="after")
    def _refuse_default_credentials_in_production(self) -> Self:
        """Every URL setting that carries credentials (the broker's and the database's always
        do: without a user or password the clients fall back to guest or trust)."""
        if self.env != "production":
            return self
        for variable, field in env_names(type(self)).items():
            value = getattr(self, field)
            if not isinstance(value, str) or "://" not in value:
                continue
            if urlsplit(value).username is None and variable not in ALWAYS_AUTHENTICATED:
                continue
            if (reason := known_credentials(value)) is not None:
                raise _default_credentials_refused(variable, reason)
        return self


# URLs whose clients log in as a default user when the URL names none.
ALWAYS_AUTHENTICATED = frozenset({"RABBITMQ_URL", "DATABASE_URL"})


def list_of_strings(value: Any) -> Any:
    """A JSON list or a comma-separated list, as an operator would write either in an env file
    (for a list setting declared ``Annotated[list[...], NoDecode]``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


def env_names(settings_class: type[BaseSettings], *, every_alias: bool = False) -> dict[str, str]:
    """Environment variable → field name: the documented name of each setting, or with
    ``every_alias`` every name a setting is also read from."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices if every_alias else alias.choices[:1]:
                names[str(choice).upper()] = name
        elif isinstance(alias, str):
            names[alias.upper()] = name
        else:
            names[(prefix + name).upper()] = name
    return names
