"""The README's settings table names every setting a service reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from incidentflow.settings import env_names
from services.classifier.settings import ClassifierSettings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.reminder.settings import ReminderSettings
from services.sentiment.settings import SentimentSettings
from services.ticketing.settings import TicketingSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize(
    "settings",
    [
        IngestSettings,
        SentimentSettings,
        ClassifierSettings,
        TicketingSettings,
        NotifierSettings,
        ReminderSettings,
    ],
)
def test_every_setting_is_in_the_readme(settings: type[BaseSettings]) -> None:
    missing = [name for name in env_names(settings) if f"`{name}`" not in README]
    assert missing == []
