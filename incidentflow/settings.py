"""Settings every service shares; each service extends this with its own prefixed class."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_DATABASE_URL = "postgresql://localhost:5432/incidentflow"


def _unprefixed(name: str) -> AliasChoices:
    # Shared settings keep one name across services, whatever the service's prefix.
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """Connection and runtime settings shared by all six services."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

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
