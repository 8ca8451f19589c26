"""Ingest settings (prefix INGEST_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    max_message_length: int = Field(5000, ge=1, le=100_000)
    # How long POST waits for the pipeline before answering 202 (``Prefer: wait=N`` overrides).
    wait_seconds: float = Field(10.0, ge=0)
    max_wait_seconds: float = Field(60.0, ge=0)
    # How often the outbox relay looks for events it has not published yet.
    relay_interval_seconds: float = Field(1.0, gt=0)
    relay_batch_size: int = Field(200, ge=1, le=5000)
