"""The six services' settings classes, for tests that check something of every one."""

from __future__ import annotations

from incidentflow.provisioning import ProvisionSettings
from incidentflow.settings import CommonSettings
from services.classifier.settings import ClassifierSettings
from services.console.settings import ConsoleSettings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.reminder.settings import ReminderSettings
from services.sentiment.settings import SentimentSettings
from services.ticketing.settings import TicketingSettings

SERVICE_SETTINGS: list[type[CommonSettings]] = [
    IngestSettings,
    SentimentSettings,
    ClassifierSettings,
    TicketingSettings,
    NotifierSettings,
    ReminderSettings,
]

# What the operators' tools read besides the services' settings (provision-roles, the support
# console).
OPERATOR_SETTINGS: list[type[CommonSettings]] = [ProvisionSettings, ConsoleSettings]
