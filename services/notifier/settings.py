"""Notifier settings (prefix NOTIFIER_; SMTP keeps the usual SMTP_* names)."""

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, f"NOTIFIER_{name}")


class NotifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    prefetch: int = Field(20, ge=1, le=1000)
    # Defaults point at the dev inbox that `make up` starts.
    smtp_host: str = Field("localhost", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(1025, ge=1, le=65535, validation_alias=_env("SMTP_PORT"))
    smtp_username: str | None = Field(None, validation_alias=_env("SMTP_USERNAME"))
    smtp_password: SecretStr | None = Field(None, validation_alias=_env("SMTP_PASSWORD"))
    smtp_starttls: bool = Field(False, validation_alias=_env("SMTP_STARTTLS"))
    smtp_tls: bool = Field(False, validation_alias=_env("SMTP_TLS"))
    smtp_timeout_seconds: float = Field(10.0, gt=0, validation_alias=_env("SMTP_TIMEOUT_SECONDS"))
    mail_from: str = Field(
        "Customer Support <support@company.com>", validation_alias=_env("MAIL_FROM")
    )
    support_address: str = "support@company.com"
    # Where escalations of incidents left open go: the support team's own inbox.
    escalation_address: str = "support-team@company.com"
