"""Ticketing settings (prefix TICKETING_)."""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings

Backend = Literal["rest", "zendesk", "jira", "local"]

# Incidents a reconciliation round claims at once.
RECONCILE_BATCH_SIZE = 50


class TicketingSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETING_", extra="ignore")

    # `local` when nothing is configured; `rest` when only TICKETING_URL is (the seed's setup).
    backend: Backend = "local"
    url: str | None = None
    token: SecretStr | None = None
    timeout_seconds: float = Field(5.0, gt=0)

    zendesk_subdomain: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    zendesk_email: str | None = None
    zendesk_api_token: SecretStr | None = None

    jira_email: str | None = None
    jira_api_token: SecretStr | None = None
    # A project key is letters, digits and underscores: safe to quote into JQL.
    jira_project: str | None = Field(None, pattern=r"^[A-Z][A-Z0-9_]*$")
    jira_issue_type: str = "Task"

    max_attempts: int = Field(3, ge=1, le=10)
    # One create, all attempts and back-offs included, never holds an incident longer.
    create_deadline_seconds: float = Field(8.0, gt=0)
    # The most calls in flight; the bound adapts below it (incidentflow/concurrency.py).
    max_concurrency: int = Field(64, ge=1, le=256)
    breaker_threshold: int = Field(5, ge=1)
    breaker_reset_seconds: float = Field(10.0, gt=0)
    reconcile_interval_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _backend_configured(self) -> Self:
        if "backend" not in self.model_fields_set and self.url:
            self.backend = "rest"
        needed: dict[str, object] = {}
        if self.backend == "rest":
            needed = {"TICKETING_URL": self.url}
        elif self.backend == "zendesk":
            needed = {
                "TICKETING_ZENDESK_SUBDOMAIN (or TICKETING_URL)": self.zendesk_subdomain
                or self.url,
                "TICKETING_ZENDESK_EMAIL": self.zendesk_email,
                "TICKETING_ZENDESK_API_TOKEN": self.zendesk_api_token,
            }
        elif self.backend == "jira":
            needed = {
                "TICKETING_URL": self.url,
                "TICKETING_JIRA_EMAIL": self.jira_email,
                "TICKETING_JIRA_API_TOKEN": self.jira_api_token,
                "TICKETING_JIRA_PROJECT": self.jira_project,
            }
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ValueError(f"TICKETING_BACKEND={self.backend} needs {', '.join(missing)}")
        return self

    @property
    def zendesk_base_url(self) -> str:
        return self.url or f"https://{self.zendesk_subdomain}.zendesk.com"

    @property
    def reconcile_lease_seconds(self) -> float:
        """How long a claimed batch stays claimed: long enough for every create in it, in
        waves of max_concurrency, to run to its deadline; a replica that died frees it then."""
        waves = math.ceil(RECONCILE_BATCH_SIZE / self.max_concurrency) + 1
        return waves * self.create_deadline_seconds
