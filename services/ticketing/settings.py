"""Ticketing settings (prefix TICKETING_)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings


class TicketingSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETING_", extra="ignore")

    url: str | None = None
    token: SecretStr | None = None
    timeout_seconds: float = Field(5.0, gt=0)
