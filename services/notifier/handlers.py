"""Notifier's subscribers: acknowledge ticketed incidents, send requested reminders."""

from __future__ import annotations

import asyncio
import logging

from contracts.events import (
    IncidentAcknowledged,
    IncidentTicketed,
    ReminderRequested,
    derived_event_id,
)
from contracts.topology import NOTIFIER_REMINDER, NOTIFIER_TICKETED
from incidentflow.audit import record_handled
from incidentflow.service import ServiceRuntime
from incidentflow.steps import Delivery
from incidentflow.tracing import each_traced
from services.notifier import store
from services.notifier.compose import channels_for
from services.notifier.notifications import IncidentView
from services.notifier.notify import Notifier

log = logging.getLogger("incidentflow.notifier")


def register(runtime: ServiceRuntime, notifier: Notifier) -> None:
    rules = notifier.settings.channel_rules

    acknowledgements = runtime.step_writes(store.acknowledge_many)

    async def acknowledge(event: IncidentTicketed, *, final: bool) -> list[str]:
        """The channels that reached the customer; raises when a notification is pending."""
        view = IncidentView(
            incident_id=event.incident_id,
            ticket_id=event.ticket_id,
            message=event.message,
            email=event.email,
            channel=event.channel,
            created_at=event.created_at,
            language=event.language,
        )
        channels = channels_for(
            event.channel, event.classification, rules, has_email=bool(event.email)
        )
        return await notifier.acknowledge(view, channels, event.phone, final=final)

    # A batch's events are acknowledged concurrently, at most this many at once (the
    # consumer's prefetch bounds them so one by one), so a claim's lease does not start long
    # before the mailer has a connection for its send.
    in_hand = asyncio.Semaphore(notifier.settings.prefetch)

    async def acknowledge_in_turn(delivery: Delivery[IncidentTicketed]) -> list[str]:
        async with in_hand:
            return await acknowledge(delivery.event, final=delivery.last_try)

    @runtime.step(NOTIFIER_TICKETED)
    async def acknowledge_incidents(deliveries: list[Delivery[IncidentTicketed]]) -> None:
        """Each customer acknowledged under their incident's trace, one write, each announced
        as incident.acknowledged.

        A batch is never the last try of a notification: when one is pending, the call fails
        and the batch goes one event at a time, which skips what was sent (the claims say
        so) and retries the rest with its delivery count."""
        reached = await each_traced(
            (delivery.event.trace, acknowledge_in_turn(delivery)) for delivery in deliveries
        )
        await acknowledgements.submit_all([delivery.event for delivery in deliveries])
        for delivery, channels in zip(deliveries, reached, strict=True):
            event = delivery.event
            delivery.emit(
                IncidentAcknowledged(
                    event_id=derived_event_id(event.incident_id, "acknowledged"),
                    incident_id=event.incident_id,
                    ticket_id=event.ticket_id,
                    channels=channels,
                    trace=event.trace,
                ),
                "incident acknowledged",
            )

    @runtime.step(NOTIFIER_REMINDER, whole_batches=False)
    async def send_reminder(deliveries: list[Delivery[ReminderRequested]]) -> None:
        """One follow-up or escalation mail (or text), unless the incident was resolved
        since; one at a time, so a failing send does not resend the others."""
        (delivery,) = deliveries
        event = delivery.event
        async with runtime.pool.acquire() as conn:
            found = await store.incident_for_reminder(conn, event.incident_id)
        if found is None:
            raise LookupError(f"incident {event.incident_id} not found")
        status, view = found
        final = delivery.last_try
        if status != "open":
            # Resolved after the reminder service looked: nobody needs chasing.
            state = "skipped"
        elif event.kind == "escalation":
            to = notifier.settings.escalation_address
            await notifier.send_email(view, "escalation", to=to, final=final)
            state = "sent"
        elif view.email:
            await notifier.send_email(view, "reminder", final=final)
            state = "sent"
        else:
            # Came in by text, without an address: followed up on the channel it came by.
            await notifier.send_text(view, view.channel, view.phone, final=final, kind="reminder")
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
