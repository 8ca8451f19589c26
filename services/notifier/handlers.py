"""Notifier's subscribers: acknowledge ticketed incidents, send requested reminders."""

from __future__ import annotations

import logging

from contracts.events import (
    IncidentAcknowledged,
    IncidentTicketed,
    NotificationKind,
    ReminderRequested,
    derived_event_id,
)
from contracts.topology import NOTIFIER_REMINDER, NOTIFIER_TICKETED
from incidentflow.audit import record_handled
from incidentflow.messaging import publish_event
from incidentflow.service import ServiceRuntime
from services.notifier import store
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.compose import (
    IncidentView,
    channels_for,
    email_message,
    mask_email,
    mask_phone,
    text_message,
)
from services.notifier.settings import NotifierSettings

log = logging.getLogger("incidentflow.notifier")


class Notifier:
    """Sends each (incident, channel, kind) notification at most once successfully."""

    def __init__(self, runtime: ServiceRuntime, mailer: SmtpMailer, settings: NotifierSettings):
        self.runtime = runtime
        self.mailer = mailer
        self.settings = settings

    async def send_email(
        self, view: IncidentView, kind: NotificationKind, to: str | None = None
    ) -> None:
        mail = email_message(
            view, kind, self.settings.mail_from, self.settings.support_address, to=to
        )
        body = mail.get_content()
        async with self.runtime.pool.acquire() as conn:
            if not await store.claim(
                conn, view.incident_id, "email", kind, mask_email(to or view.email), body
            ):
                return
        try:
            reply = await self.mailer.send(mail)
        except Exception as exc:
            async with self.runtime.pool.acquire() as conn:
                await store.mark(
                    conn, view.incident_id, "email", kind, "queued", error=repr(exc)[:500]
                )
            raise  # retried with back-off by the delivery policy, then dead-lettered
        async with self.runtime.pool.acquire() as conn:
            await store.mark(
                conn, view.incident_id, "email", kind, "sent", provider_message_id=reply
            )

    async def log_text(self, view: IncidentView, channel: str, phone: str | None) -> None:
        """SMS and WhatsApp are recorded as logged until a provider is configured."""
        text = text_message(view)
        async with self.runtime.pool.acquire() as conn:
            if await store.claim(conn, view.incident_id, channel, "ack", mask_phone(phone), text):
                await store.mark(conn, view.incident_id, channel, "ack", "logged")


def register(runtime: ServiceRuntime, notifier: Notifier) -> None:
    @runtime.broker.subscriber(NOTIFIER_TICKETED.queue, NOTIFIER_TICKETED.source)
    async def on_incident_ticketed(event: IncidentTicketed) -> None:
        view = IncidentView(
            incident_id=event.incident_id,
            ticket_id=event.ticket_id,
            message=event.message,
            email=event.email,
            channel=event.channel,
            created_at=event.created_at,
        )
        channels = channels_for(event.channel)
        for channel in channels:
            if channel == "email":
                await notifier.send_email(view, "ack")
            else:
                await notifier.log_text(view, channel, event.phone)
        async with runtime.pool.acquire() as conn, conn.transaction():
            await record_handled(conn, runtime.name, event)
            await store.mark_acknowledged(conn, event.incident_id)
        acknowledged = IncidentAcknowledged(
            event_id=derived_event_id(event.incident_id, "acknowledged"),
            incident_id=event.incident_id,
            ticket_id=event.ticket_id,
            channels=channels,
            trace=event.trace,
        )
        await publish_event(runtime.broker, acknowledged)
        log.info("incident acknowledged", extra={"incident_id": str(event.incident_id)})

    @runtime.broker.subscriber(NOTIFIER_REMINDER.queue, NOTIFIER_REMINDER.source)
    async def on_reminder_requested(event: ReminderRequested) -> None:
        async with runtime.pool.acquire() as conn:
            found = await store.incident_for_reminder(conn, event.incident_id)
        if found is None:
            raise LookupError(f"incident {event.incident_id} not found")
        status, view = found
        if status != "open":
            # Resolved after the reminder service looked: nobody needs chasing.
            state = "skipped"
        elif event.kind == "escalation":
            await notifier.send_email(view, "escalation", to=notifier.settings.escalation_address)
            state = "sent"
        else:
            await notifier.send_email(view, "reminder")
            state = "sent"
        async with runtime.pool.acquire() as conn, conn.transaction():
            await record_handled(conn, runtime.name, event)
            await store.mark_reminder(
                conn,
                event.incident_id,
                event.reminder_id,
                state,
                customer_follow_up=event.kind != "escalation",
            )
        log.info("reminder handled", extra={"incident_id": str(event.incident_id), "state": state})
