"""Ingest settings (prefix INGEST_)."""

from __future__ import annotations

from typing import Annotated, Any, Self

from limits import parse
from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from incidentflow.settings import CommonSettings, list_of_strings
from services.ingest.intake.mailbox import Mailbox
from services.ingest.keys import ApiKey


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    max_message_length: int = Field(5000, ge=1, le=100_000)
    # How long POST waits for the pipeline before answering 202 (``Prefer: wait=N`` overrides).
    wait_seconds: float = Field(10.0, ge=0)
    max_wait_seconds: float = Field(60.0, ge=0)
    # How often the outbox relay looks for events it has not published yet.
    relay_interval_seconds: float = Field(1.0, gt=0)
    relay_batch_size: int = Field(200, ge=1, le=5000)
    # How long the relay, woken by an insert, waits for more before it publishes: what
    # arrives meanwhile goes in the same message, and every step after handles it as one
    # batch (docs/adr/0007-ingest-writes-an-outbox-a-relay-publishes-it.md).
    relay_linger_seconds: float = Field(0.05, ge=0, le=1)

    # Entries `name:scope1+scope2:sha256hex` (`incidentflow api-key new` prints one); the keys
    # themselves are never configured. None configured and no JWT issuer = open API (dev/test).
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    # With it the entries' digests are HMACs keyed with it (`incidentflow api-key` reads it
    # too): a leaked list of entries cannot be tried against guessed keys (docs/security.md).
    api_key_secret: SecretStr | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    rate_limit_per_key: str = "600/minute"
    rate_limit_per_customer: str = "20/minute"
    # Health probes and metrics on a port of their own (services/ingest/internal.py): unset,
    # 9000 in production, where the public port then answers the API alone; elsewhere unset
    # means none, the routes staying on the public port.
    internal_port: int | None = Field(None, ge=1, le=65535)
    # Every interface of the pod: the kubelet probes it at the pod address.
    internal_host: str = "0.0.0.0"
    # Failed authentications from one client address before it gets 429s (docs/security.md).
    auth_failures_per_client: str = "20/minute"
    max_body_bytes: int = Field(65536, ge=1024, le=10_000_000)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A customer repeating an open incident's message within this window is linked to it.
    duplicate_window_seconds: int = Field(3600, ge=0)

    # Mail and texts in (services/ingest/intake/, docs/adr/0052). The SMTP listener for a
    # provider that forwards the company's support mail: "off" (or empty) for none.
    intake_smtp_port: int | None = Field(
        2525, ge=1, le=65535, validation_alias=AliasChoices("INTAKE_SMTP_PORT")
    )
    intake_smtp_host: str = Field("0.0.0.0", validation_alias=AliasChoices("INTAKE_SMTP_HOST"))
    # A mail larger than this is refused at DATA (552), attachments included.
    intake_smtp_max_bytes: int = Field(
        10_485_760, ge=1024, le=100_000_000, validation_alias=AliasChoices("INTAKE_SMTP_MAX_BYTES")
    )
    # STARTTLS is offered when both are set (PEM files).
    intake_smtp_tls_cert: FilePath | None = Field(
        None, validation_alias=AliasChoices("INTAKE_SMTP_TLS_CERT")
    )
    intake_smtp_tls_key: FilePath | None = Field(
        None, validation_alias=AliasChoices("INTAKE_SMTP_TLS_KEY")
    )
    # A mailbox ingest reads (services/ingest/intake/imap.py): imaps://user@host/INBOX.
    intake_imap_url: str | None = Field(None, validation_alias=AliasChoices("INTAKE_IMAP_URL"))
    intake_imap_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("INTAKE_IMAP_PASSWORD")
    )
    # Where a mail goes once it is stored (made when missing).
    intake_imap_done_folder: str = Field(
        "Processed", min_length=1, validation_alias=AliasChoices("INTAKE_IMAP_DONE_FOLDER")
    )
    # How often the mailbox is read again when IDLE brought no push (or the server has none).
    intake_imap_poll_seconds: float = Field(
        5.0, gt=0, le=3600, validation_alias=AliasChoices("INTAKE_IMAP_POLL_SECONDS")
    )
    # A private CA for the mailbox's certificate (imaps); the system's CAs otherwise.
    intake_imap_ca_file: FilePath | None = Field(
        None, validation_alias=AliasChoices("INTAKE_IMAP_CA_FILE")
    )
    # Our own sender (the notifier's MAIL_FROM): a mail from it is a loop, never answered.
    mail_from: str = Field(
        "Customer Support <support@company.com>",
        validation_alias=AliasChoices("MAIL_FROM", "NOTIFIER_MAIL_FROM"),
    )
    # Twilio's webhook (POST /webhooks/twilio) is refused (404) without the account's token.
    twilio_auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN")
    )
    # The public URL Twilio calls, when a proxy in front changes scheme, host or path
    # (https://support.example.com/webhooks/twilio): the signature covers the URL Twilio used.
    intake_twilio_url: str | None = Field(None, validation_alias=AliasChoices("INTAKE_TWILIO_URL"))
    # A text joins the sender's open incident from this many hours back, else opens one.
    intake_text_join_hours: float = Field(
        72.0, gt=0, le=24 * 365, validation_alias=AliasChoices("INTAKE_TEXT_JOIN_HOURS")
    )

    @field_validator("intake_smtp_port", mode="before")
    @classmethod
    def _port_or_off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
            return None
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        items = list_of_strings(value)
        return [ApiKey.parse(i) if isinstance(i, str) else i for i in items]

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        return list_of_strings(value)

    @field_validator("rate_limit_per_key", "rate_limit_per_customer", "auth_failures_per_client")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        parse(value)  # ValueError on anything limits' notation does not accept
        return value

    @model_validator(mode="after")
    def _auth_configured(self) -> Self:
        jwt = (self.jwt_issuer, self.jwt_audience, self.jwt_jwks_url)
        if any(jwt) and not all(jwt):
            raise ValueError(
                "INGEST_JWT_ISSUER, INGEST_JWT_AUDIENCE and INGEST_JWT_JWKS_URL go together"
            )
        if self.env == "production" and not self.auth_enabled:
            raise ValueError(
                "ENV=production needs INGEST_API_KEYS (or INGEST_JWT_ISSUER): "
                "the ingest API must not run open"
            )
        if self.intake_imap_url is not None:
            Mailbox.parse(self.intake_imap_url)  # ValueError saying what it should look like
            if self.intake_imap_password is None:
                raise ValueError("INTAKE_IMAP_URL needs INTAKE_IMAP_PASSWORD (or _FILE)")
        if (self.intake_smtp_tls_cert is None) != (self.intake_smtp_tls_key is None):
            raise ValueError("INTAKE_SMTP_TLS_CERT and INTAKE_SMTP_TLS_KEY go together")
        if self.env == "production" and self.api_keys and self.api_key_secret is None:
            # Plain SHA-256 digests of keys someone chose can be tried offline against
            # guesses by whoever reads the settings; HMAC digests need the server's secret.
            raise ValueError(
                "ENV=production with INGEST_API_KEYS needs INGEST_API_KEY_SECRET (the "
                "digests HMAC'd with it: `incidentflow api-key new` prints them)"
            )
        return self

    @property
    def health_port(self) -> int | None:
        """Where the probes and metrics are served apart from the API, if anywhere."""
        if self.internal_port is None and self.env == "production":
            return 9000
        return self.internal_port

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or self.jwt_issuer is not None
