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
from incidentflow.messaging import on_last_delivery
from incidentflow.service import ServiceRuntime
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

    async def announce(event: IncidentTicketed, reached: list[str]) -> None:
        acknowledged = IncidentAcknowledged(
            event_id=derived_event_id(event.incident_id, "acknowledged"),
            incident_id=event.incident_id,
            ticket_id=event.ticket_id,
            channels=reached,
            trace=event.trace,
        )
        await runtime.events.publish(acknowledged)
        log.info("incident acknowledged", extra={"incident_id": str(event.incident_id)})

    @runtime.consume(NOTIFIER_TICKETED)
    async def on_incident_ticketed(event: IncidentTicketed) -> None:
        reached = await acknowledge(event, final=on_last_delivery())
        await acknowledgements.submit(event)
        await announce(event, reached)

    # A whole batch holds one of the consumer's slots, however many events it has; this
    # bounds its events in hand as the slots bound them one by one (settings.prefetch), so a
    # claim's lease does not start long before the mailer has a connection for its send.
    in_hand = asyncio.Semaphore(notifier.settings.prefetch)

    async def acknowledge_in_turn(event: IncidentTicketed) -> list[str]:
        async with in_hand:
            return await acknowledge(event, final=False)

    async def on_ticketed_batch(events: list[IncidentTicketed]) -> None:
        """A batch's events together: acknowledged concurrently (bounded as above), one
        write, then each published and logged under its own incident's trace.

        Never the last try of a notification: when one is pending, the batch fails whole and
        goes the event by event way, which skips what was sent (the claims say so) and
        retries the rest with its delivery count."""
        reached = await each_traced((event.trace, acknowledge_in_turn(event)) for event in events)
        await acknowledgements.submit_all(events)
        await each_traced(
            (event.trace, announce(event, channels))
            for event, channels in zip(events, reached, strict=True)
        )

    runtime.handle_batches(NOTIFIER_TICKETED, IncidentTicketed, on_ticketed_batch)

    @runtime.consume(NOTIFIER_REMINDER)
    async def on_reminder_requested(event: ReminderRequested) -> None:
        async with runtime.pool.acquire() as conn:
            found = await store.incident_for_reminder(conn, event.incident_id)
        if found is None:
            raise LookupError(f"incident {event.incident_id} not found")
        status, view = found
        final = on_last_delivery()
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
