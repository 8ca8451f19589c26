"""Console settings (prefix CONSOLE_). Who may sign in comes from ingest's settings: the same
API keys (INGEST_API_KEYS) and identity provider as the API."""

from __future__ import annotations

from typing import Self
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    # Where `make up` serves it (its own port, never the customer-facing one).
    port: int = Field(8010, ge=1, le=65535)
    # Signs the session cookie. Unset outside production: a random one per process (sessions
    # end with the process).
    session_secret: SecretStr | None = None
    # A signed-in operator is signed out after this long.
    session_max_age_seconds: int = Field(8 * 3600, ge=60, le=7 * 24 * 3600)
    # Cookies only over HTTPS; on by default in production (behind TLS).
    secure_cookies: bool | None = None
    # Incidents per page of the list.
    page_size: int = Field(50, ge=5, le=200)
    # The ticket system's page of a ticket, {ticket_id} standing for its id: a Zendesk
    # `https://acme.zendesk.com/agent/tickets/{ticket_id}`, a Jira
    # `https://acme.atlassian.net/browse/{ticket_id}`. Unset: ticket ids are shown as text.
    ticket_url: str | None = Field(None, pattern=r"^https?://[^\s]*\{ticket_id\}[^\s]*$")

    def ticket_link(self, ticket_id: str | None, fallback: bool | None) -> str | None:
        """The ticket's page, for a ticket the ticket system has (not a local fallback id)."""
        if not self.ticket_url or not ticket_id or fallback:
            return None
        return self.ticket_url.replace("{ticket_id}", quote(ticket_id, safe=""))

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Self:
        if self.env == "production" and self.session_secret is None:
            raise ValueError(
                "ENV=production needs CONSOLE_SESSION_SECRET: sessions signed with a key "
                "made at start end with the process and differ between replicas"
            )
        return self

    @property
    def cookies_secure(self) -> bool:
        return self.env == "production" if self.secure_cookies is None else self.secure_cookies
