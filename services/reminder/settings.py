"""Reminder settings (prefix REMINDER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings


class ReminderSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="REMINDER_", extra="ignore")

    delay_seconds: int = Field(86_400, ge=1, lt=2**28)
    # Safety net: reminders past due by more than this were lost by the broker; fire them.
    sweep_grace_seconds: int = Field(60, ge=1)
    sweep_interval_seconds: float = Field(30.0, gt=0)
