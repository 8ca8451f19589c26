"""The reminder service: ``uvicorn services.reminder.app:app``."""

from faststream.asgi import AsgiFastStream

from contracts.topology import REMINDER_DUE, REMINDER_TICKETED
from incidentflow.service import ServiceRuntime
from services.reminder.handlers import Reminders, register
from services.reminder.settings import ReminderSettings


def create_app(settings: ReminderSettings | None = None) -> AsgiFastStream:
    settings = settings or ReminderSettings()
    runtime = ServiceRuntime("reminder", settings, (REMINDER_TICKETED, REMINDER_DUE))
    reminders = Reminders(runtime, settings)
    register(runtime, reminders)
    return runtime.asgi_app()


app = create_app()
