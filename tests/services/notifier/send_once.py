"""Sends one acknowledgement, an email or an SMS, through the real Notifier, in a process of
its own that a test can kill -9 mid-send:
``python -m tests.services.notifier.send_once EVENT_JSON [email|sms]``.

The event is an IncidentTicketed as JSON; the rest comes from the environment (DATABASE_URL,
SMTP_PORT or TWILIO_BASE_URL, NOTIFIER_SEND_LEASE_SECONDS, and JOURNAL_DIR, empty for no
journal).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from contracts.events import IncidentTicketed
from incidentflow.db import create_pool
from services.notifier.adapters.base import TextSender
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.adapters.twilio import LoggedTexts
from services.notifier.journal import SendJournal
from services.notifier.notifications import IncidentView
from services.notifier.notify import Notifier
from services.notifier.settings import NotifierSettings
from tests.fake_twilio import opened_texts


async def main(event: IncidentTicketed, channel: str) -> None:
    settings = NotifierSettings()
    pool = await create_pool(settings.database_url, 2)
    journal = SendJournal(Path(os.environ["JOURNAL_DIR"])) if os.environ["JOURNAL_DIR"] else None
    texts: TextSender = LoggedTexts()
    if channel == "sms":
        texts = await opened_texts(os.environ["TWILIO_BASE_URL"])
    mailer = SmtpMailer("127.0.0.1", settings.smtp_port)
    notifier = Notifier(lambda: pool, mailer, texts, settings, journal)
    view = IncidentView(
        event.incident_id, event.ticket_id, event.message, event.email, "email", event.created_at
    )
    if channel == "sms":
        print(await notifier.send_text(view, "sms", event.phone, final=False), flush=True)
    else:
        print(await notifier.send_email(view, "ack", final=False), flush=True)


if __name__ == "__main__":
    channel = sys.argv[2] if len(sys.argv) > 2 else "email"
    asyncio.run(main(IncidentTicketed.model_validate_json(sys.argv[1]), channel))
