"""Reminder's subscribers: schedule a follow-up per ticketed incident, fire it when due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

from contracts.events import (
    IncidentTicketed,
    ReminderDue,
    ReminderRequested,
    derived_event_id,
)
from contracts.topology import REMINDER_DUE, REMINDER_TICKETED
from incidentflow.audit import record_handled
from incidentflow.loops import survive_round
from incidentflow.messaging import publish_delayed, publish_event
from incidentflow.metrics import record_reminder_lateness
from incidentflow.service import ServiceRuntime
from services.reminder import store
from services.reminder.settings import ReminderSettings

log = logging.getLogger("incidentflow.reminder")

# A due message this early (a duplicate schedule, a clock step) is put back to wait.
EARLY_TOLERANCE = timedelta(seconds=1)


class Reminders:
    def __init__(self, runtime: ServiceRuntime, settings: ReminderSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self._sweeper: asyncio.Task[None] | None = None

    async def schedule(self, event: IncidentTicketed) -> None:
        """The customer follow-up, and the team escalation if enabled, for a new incident."""
        delays = {
            store.FOLLOW_UP: self.settings.follow_up_delay(event.classification, event.sentiment)
        }
        if self.settings.escalation_seconds:
            delays[store.ESCALATION] = self.settings.escalation_seconds
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            reminders = [
                await store.schedule(
                    conn, event.incident_id, kind, event.created_at + timedelta(seconds=delay)
                )
                for kind, delay in delays.items()
            ]
            await record_handled(conn, self.runtime.name, event, outcome="scheduled")
        for reminder in reminders:
            if reminder.state == "scheduled":
                await self._publish_due(
                    reminder.id, event.incident_id, reminder.kind, reminder.due_at
                )

    async def _publish_due(
        self, reminder_id: int, incident_id: uuid.UUID, kind: str, due_at: datetime
    ) -> None:
        due = ReminderDue(
            event_id=derived_event_id(incident_id, f"reminder-due:{kind}"),
            incident_id=incident_id,
            reminder_id=reminder_id,
            kind=kind,
            due_at=due_at,
        )
        delay = (due_at - datetime.now(UTC)).total_seconds()
        await publish_delayed(self.runtime.broker, due, delay)

    async def fire(self, event: ReminderDue) -> None:
        """Ask for the follow-up if the incident is still open; at most once per reminder."""
        if event.due_at - datetime.now(UTC) > EARLY_TOLERANCE:
            await self._publish_due(event.reminder_id, event.incident_id, event.kind, event.due_at)
            return
        # Observability: how late the delay queues (or the sweep) delivered this reminder.
        seconds_late = (datetime.now(UTC) - event.due_at).total_seconds()
        request: ReminderRequested | None = None
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            found = await store.lock_for_firing(conn, event.reminder_id)
            if found is None:
                raise LookupError(f"reminder {event.reminder_id} not found")
            reminder, status, incident = found
            if reminder.state not in ("scheduled", "requested"):
                outcome = f"ignored: already {reminder.state}"
            elif status != "open":
                await store.set_state(conn, reminder.id, "skipped")
                outcome = "skipped: incident resolved"
            else:
                # 'requested' is kept until notifier confirms, so a lost publish is redone.
                await store.set_state(conn, reminder.id, "requested")
                outcome = "requested"
                request = ReminderRequested(
                    event_id=derived_event_id(event.incident_id, f"reminder:{reminder.kind}"),
                    incident_id=event.incident_id,
                    reminder_id=reminder.id,
                    kind=reminder.kind,
                    ticket_id=incident["ticket_id"],
                    email=incident["email"],
                    message=incident["message"],
                    created_at=incident["incident_created"],
                    trace=event.trace,
                )
            await record_handled(conn, self.runtime.name, event, outcome=outcome)
        if not outcome.startswith("ignored"):  # observability: a redelivery is not a firing
            record_reminder_lateness(event.kind, seconds_late)
        if request is not None:
            await publish_event(self.runtime.broker, request)
        log.info("reminder due", extra={"incident_id": str(event.incident_id), "outcome": outcome})

    async def sweep_once(self) -> int:
        """Fire reminders the broker should have delivered long ago; returns how many."""
        async with self.runtime.pool.acquire() as conn:
            lost = await store.overdue(conn, self.settings.sweep_grace_seconds)
        for reminder in lost:
            log.warning("overdue reminder swept", extra={"incident_id": str(reminder.incident_id)})
            await self.fire(
                ReminderDue(
                    incident_id=reminder.incident_id,
                    reminder_id=reminder.id,
                    kind=reminder.kind,
                    due_at=reminder.due_at,
                )
            )
        return len(lost)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_seconds)
            with survive_round(log, "reminder sweep"):
                await self.sweep_once()

    async def start_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper


def register(runtime: ServiceRuntime, reminders: Reminders) -> None:
    @runtime.broker.subscriber(REMINDER_TICKETED.queue, REMINDER_TICKETED.source)
    async def on_incident_ticketed(event: IncidentTicketed) -> None:
        await reminders.schedule(event)

    @runtime.broker.subscriber(REMINDER_DUE.queue, REMINDER_DUE.source)
    async def on_reminder_due(event: ReminderDue) -> None:
        await reminders.fire(event)

    runtime.on_started.append(reminders.start_sweeper)
    runtime.on_stopping.append(reminders.stop_sweeper)
