"""The notifier service: ``uvicorn services.notifier.app:app``."""

from functools import partial

from faststream.asgi import AsgiFastStream

from incidentflow.service import ServiceRuntime
from services.notifier.adapters.base import TextSender
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts, TwilioTexts
from services.notifier.handlers import register
from services.notifier.journal import journal_name
from services.notifier.notify import Notifier
from services.notifier.settings import NotifierSettings


def build_runtime(settings: NotifierSettings) -> ServiceRuntime:
    """The service with its handlers registered, not started."""
    runtime = ServiceRuntime("notifier", settings)
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        start_tls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        validate_certs=settings.smtp_validate_certs,
        ca_file=settings.smtp_ca_file,
        timeout=settings.smtp_timeout_seconds,
        max_concurrent=settings.max_concurrent_sends,
    )
    texts: TextSender = LoggedTexts()
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number:
        twilio = TwilioTexts(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            from_number=settings.twilio_from_number,
            whatsapp_from=settings.twilio_whatsapp_from,
            base_url=settings.twilio_base_url,
            timeout=settings.twilio_timeout_seconds,
            max_concurrent=settings.max_concurrent_sends,
        )
        runtime.on_connected.append(twilio.open)
        runtime.on_stopping.append(twilio.close)
        texts = twilio
    notifier = Notifier(lambda: runtime.pool, mailer, texts, settings)
    journal_dir = settings.journal_dir / journal_name(settings.database_url)
    runtime.on_connected.append(partial(notifier.open_journal, journal_dir))
    runtime.on_stopping.append(mailer.close)
    runtime.on_stopping.append(notifier.close_journal)
    register(runtime, notifier)
    return runtime


def create_app(settings: NotifierSettings | None = None) -> AsgiFastStream:
    return build_runtime(settings or NotifierSettings()).asgi_app()


app = create_app()
