"""Notifier settings (prefix NOTIFIER_; SMTP and Twilio keep their usual unprefixed names)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import phonenumbers
from limits import parse
from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from contracts.events import Category
from incidentflow.phone import to_e164
from incidentflow.settings import CommonSettings, list_of_strings
from services.notifier.compose import parse_address
from services.notifier.notifications import RecipientLimit

Channel = Literal["email", "sms", "whatsapp"]


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, f"NOTIFIER_{name}")


def _fraud_gets_an_sms() -> dict[Category, list[Channel]]:
    return {"fraud_report": ["sms"]}


class NotifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    # Events in hand at once: enough for max_concurrent_sends with the next ones decoded and
    # claimed while those are with the SMTP server
    # (docs/adr/0023-notifications-claimed-with-a-lease-sent-and-recorded-shielded.md).
    prefetch: int = Field(100, ge=1, le=1000)
    # Claims, records of sends and acknowledgements are group commits (notify.py), each
    # with a connection of its own while it runs, besides the reminder path.
    db_pool_size: int = Field(15, ge=1, le=100, validation_alias=AliasChoices("DB_POOL_SIZE"))
    # Defaults point at the dev inbox that `make up` starts.
    smtp_host: str = Field("localhost", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(1025, ge=1, le=65535, validation_alias=_env("SMTP_PORT"))
    smtp_username: str | None = Field(None, validation_alias=_env("SMTP_USERNAME"))
    smtp_password: SecretStr | None = Field(None, validation_alias=_env("SMTP_PASSWORD"))
    smtp_starttls: bool = Field(False, validation_alias=_env("SMTP_STARTTLS"))
    smtp_tls: bool = Field(False, validation_alias=_env("SMTP_TLS"))
    smtp_validate_certs: bool = Field(True, validation_alias=_env("SMTP_VALIDATE_CERTS"))
    smtp_ca_file: FilePath | None = Field(None, validation_alias=_env("SMTP_CA_FILE"))
    smtp_timeout_seconds: float = Field(10.0, gt=0, validation_alias=_env("SMTP_TIMEOUT_SECONDS"))
    mail_from: str = Field(
        "Customer Support <support@company.com>", validation_alias=_env("MAIL_FROM")
    )
    support_address: str = "support@company.com"
    # Where escalations of incidents left open go: the support team's own inbox.
    escalation_address: str = "support-team@company.com"

    twilio_account_sid: str | None = Field(None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: SecretStr | None = Field(None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_from_number: str | None = Field(None, validation_alias=_env("TWILIO_FROM_NUMBER"))
    # A WhatsApp-enabled sender; the SMS number when unset.
    twilio_whatsapp_from: str | None = Field(None, validation_alias=_env("TWILIO_WHATSAPP_FROM"))
    twilio_base_url: str = Field("https://api.twilio.com", validation_alias=_env("TWILIO_BASE_URL"))
    twilio_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias=_env("TWILIO_TIMEOUT_SECONDS")
    )

    # Channels every incident of a category gets on top of its own channel and email.
    channel_rules: dict[Category, list[Channel]] = Field(default_factory=_fraud_gets_an_sms)
    # How long a claimed notification is ours; longer than any one send can take.
    send_lease_seconds: int = Field(60, ge=1, le=3600)
    # SMTP sessions (and Twilio calls) at once: a mail is four round trips to the server, so
    # a session sends a few dozen a second at most
    # (docs/adr/0023-notifications-claimed-with-a-lease-sent-and-recorded-shielded.md).
    max_concurrent_sends: int = Field(40, ge=1, le=1000)
    # Where each notifier journals the mails it handed to the server (journal.py): local
    # disk that outlives the process (a volume in containers). Replicas may share it.
    journal_dir: Path = Path("var/notifier-journal")

    # Whatever the customer id or API key: anyone who may submit an incident could otherwise
    # make us mail or text any address or number over and over (docs/adr/0045).
    limit_per_recipient: str = "5/hour"
    # ISO 3166 codes of the countries texts may go to; empty: any (refused with Twilio in
    # production, where SMS pumping to premium ranges costs real money).
    sms_countries: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Quote a short excerpt of the customer's message in mails to them, links and addresses
    # taken out; off: a mail that repeats what anyone typed is a phishing relay.
    quote_message: bool = False

    @field_validator("twilio_from_number", "twilio_whatsapp_from")
    @classmethod
    def _e164(cls, number: str | None) -> str | None:
        return None if number is None else to_e164(number)

    @field_validator("mail_from", "support_address", "escalation_address")
    @classmethod
    def _one_address(cls, value: str) -> str:
        parse_address(value)  # fail at start, not on every message
        return value

    @field_validator("limit_per_recipient")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        parse(value)  # ValueError on anything limits' notation does not accept
        return value

    @field_validator("sms_countries", mode="before")
    @classmethod
    def _parse_countries(cls, value: Any) -> Any:
        return list_of_strings(value)

    @field_validator("sms_countries")
    @classmethod
    def _known_countries(cls, countries: list[str]) -> list[str]:
        upper = [country.upper() for country in countries]
        unknown = [c for c in upper if not phonenumbers.country_code_for_region(c)]
        if unknown:
            raise ValueError(f"not ISO 3166 country codes with phone numbers: {unknown}")
        return upper

    @property
    def recipient_limit(self) -> RecipientLimit:
        item = parse(self.limit_per_recipient)
        return RecipientLimit(item.amount, item.get_expiry())

    @model_validator(mode="after")
    def _twilio_complete(self) -> Self:
        given = [self.twilio_account_sid is not None, self.twilio_auth_token is not None]
        if any(given) and not all(given):
            raise ValueError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set together or not")
        if all(given) and self.twilio_from_number is None:
            raise ValueError("TWILIO_FROM_NUMBER is required when Twilio is configured")
        if self.smtp_starttls and self.smtp_tls:
            raise ValueError("SMTP_STARTTLS and SMTP_TLS exclude each other")
        if self.env == "production" and all(given) and not self.sms_countries:
            raise ValueError(
                "ENV=production with Twilio needs NOTIFIER_SMS_COUNTRIES: the countries texts "
                "may go to (ISO 3166 codes, e.g. US,GB)"
            )
        return self

    @property
    def twilio_configured(self) -> bool:
        return self.twilio_account_sid is not None and self.twilio_auth_token is not None
