"""The reminder service: ``uvicorn services.reminder.app:app``."""

from faststream.asgi import AsgiFastStream

from incidentflow.service import ServiceRuntime
from services.reminder.handlers import Reminders, register
from services.reminder.settings import ReminderSettings


def build_runtime(settings: ReminderSettings) -> ServiceRuntime:
    """The service with its handlers registered, not started."""
    runtime = ServiceRuntime("reminder", settings)
    reminders = Reminders(runtime, settings)
    register(runtime, reminders)
    return runtime


def create_app(settings: ReminderSettings | None = None) -> AsgiFastStream:
    return build_runtime(settings or ReminderSettings()).asgi_app()


app = create_app()
