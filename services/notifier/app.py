"""The notifier service: ``uvicorn services.notifier.app:app``."""

from faststream.asgi import AsgiFastStream

from contracts.topology import NOTIFIER_REMINDER, NOTIFIER_TICKETED
from incidentflow.service import ServiceRuntime
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.handlers import Notifier, register
from services.notifier.settings import NotifierSettings


def create_app(settings: NotifierSettings | None = None) -> AsgiFastStream:
    settings = settings or NotifierSettings()
    runtime = ServiceRuntime("notifier", settings, (NOTIFIER_TICKETED, NOTIFIER_REMINDER))
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        start_tls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        timeout=settings.smtp_timeout_seconds,
    )
    register(runtime, Notifier(runtime, mailer, settings))
    return runtime.asgi_app()


app = create_app()
