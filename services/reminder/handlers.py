"""Reminder's subscribers: record follow-ups per ticketed incident, fire them when due.

The reminders table is the record; the broker only says when to look. Every reminder due in
one slot of time (REMINDER_TICK_SECONDS) shares one delayed tick through the delay queues, so
the broker carries one message per slot instead of one per reminder. A tick fires whatever is
due by its slot, older reminders included, and the sweep fires what no tick came for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from contracts.events import (
    IncidentMessageReceived,
    IncidentTicketed,
    ReminderDue,
    ReminderRequested,
    ReminderTick,
    derived_event_id,
)
from contracts.topology import REMINDER_DUE, REMINDER_MESSAGE, REMINDER_TICK, REMINDER_TICKETED
from incidentflow.batched_events import in_messages
from incidentflow.loops import survive_round
from incidentflow.messaging import publish_batch, publish_delayed
from incidentflow.metrics import record_reminder_lateness
from incidentflow.service import ServiceRuntime
from incidentflow.steps import Delivery
from services.reminder import store
from services.reminder.settings import ReminderSettings

log = logging.getLogger("incidentflow.reminder")

# A tick arriving this much before its slot (a clock step, a hand-published one) goes back
# to wait; one arriving less early than this waits here, in the handler.
EARLY_LIMIT = timedelta(seconds=2)
# Reminder requests per message at most (each up to ~5 kB: the customer's message is in it).
REQUESTS_PER_MESSAGE = 500


def slot_of(due_at: datetime, width: float) -> datetime:
    """The end of the slot ``due_at`` falls in: its tick fires everything due by then."""
    return datetime.fromtimestamp(math.ceil(due_at.timestamp() / width) * width, UTC)


class Ticks:
    """The slots whose tick this process has published (and the broker confirmed).

    Another process, or this one after a restart, may publish a slot's tick again: a second
    tick finds nothing left to fire. Slots long past are forgotten.
    """

    def __init__(self, runtime: ServiceRuntime, width: float) -> None:
        self._runtime = runtime
        self._width = width
        self._published: dict[datetime, asyncio.Future[None]] = {}
        self._forget_before = datetime.now(UTC)

    async def ensure(self, due: Iterable[datetime]) -> None:
        """A tick will come for each due time's slot, or for a later one if that slot may
        already be firing (it was due before now: a late schedule, a backlog)."""
        now = datetime.now(UTC)
        earliest = now + timedelta(seconds=self._width)
        waits: list[asyncio.Future[None]] = []
        for slot in {slot_of(max(due_at, earliest), self._width) for due_at in due}:
            published = self._published.get(slot)
            if published is None or (published.done() and published.exception() is not None):
                published = asyncio.ensure_future(self._publish(slot))
                self._published[slot] = published
            waits.append(published)
        self._forget(now)
        await asyncio.shield(asyncio.gather(*waits))

    async def _publish(self, slot: datetime) -> None:
        # The delay levels count whole seconds: the tick arrives within a second before its
        # slot, and its handler waits out the rest.
        delay = math.floor((slot - datetime.now(UTC)).total_seconds())
        await publish_delayed(self._runtime.broker, ReminderTick(due_at=slot), max(delay, 0))

    def _forget(self, now: datetime) -> None:
        if now - self._forget_before < timedelta(minutes=1):
            return
        self._forget_before = now
        cutoff = now - timedelta(minutes=1)
        for slot in [s for s in self._published if s < cutoff]:
            del self._published[slot]


class Reminders:
    def __init__(self, runtime: ServiceRuntime, settings: ReminderSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.ticks = Ticks(runtime, settings.tick_seconds)
        self._schedules = runtime.step_writes(store.schedule_many)
        self._sweeper: asyncio.Task[None] | None = None

    async def schedule(self, events: list[IncidentTicketed]) -> None:
        """The customer follow-up, and the team escalation if enabled, for new incidents
        (one, or a whole batch: incidentflow.steps)."""
        schedules = [self._schedule_of(event) for event in events]
        await self._schedules.submit_all(schedules)
        # Recorded first: a tick can only find what is in the table.
        await self.ticks.ensure(due_at for s in schedules for _, due_at in s.reminders)

    def _schedule_of(self, event: IncidentTicketed) -> store.Schedule:
        delays = {
            store.FOLLOW_UP: self.settings.follow_up_delay(event.classification, event.sentiment)
        }
        if self.settings.escalation_seconds:
            delays[store.ESCALATION] = self.settings.escalation_seconds
        return store.Schedule(
            event,
            [(kind, event.created_at + timedelta(seconds=delay)) for kind, delay in delays.items()],
        )

    async def restart_follow_up(self, event: IncidentMessageReceived) -> None:
        """The customer wrote again: their follow-up comes the policy's delay after this
        message, not after the first."""
        async with self.runtime.pool.acquire() as conn:
            kind = await store.incident_kind(conn, event.incident_id)
            if kind is None:
                raise LookupError(f"incident {event.incident_id} not found")
            category, sentiment = kind
            delay = self.settings.follow_up_delay(
                category or "other",  # type: ignore[arg-type]
                sentiment or "neutral",  # type: ignore[arg-type]
            )
            due_at = await store.restart_follow_up(
                conn,
                self.runtime.name,
                event,
                event.received_at + timedelta(seconds=delay),
            )
        if due_at is not None:
            await self.ticks.ensure([due_at])
            log.info(
                "follow-up restarted",
                extra={"incident_id": str(event.incident_id), "due_at": due_at.isoformat()},
            )

    async def on_tick(self, tick: ReminderTick) -> None:
        if await self._when_due(tick):
            await self.fire_due(tick.due_at)

    async def on_due(self, event: ReminderDue) -> None:
        """One reminder (``incidentflow reminders fire-now``, or one scheduled before ticks)."""
        if await self._when_due(event):
            await self.fire_due(datetime.now(UTC), reminder_id=event.reminder_id)

    async def _when_due(self, message: ReminderTick | ReminderDue) -> bool:
        """Wait here for a message a little early; send one far too early back to the delay
        queues (False: nothing to fire now)."""
        early = (message.due_at - datetime.now(UTC)).total_seconds()
        if early > EARLY_LIMIT.total_seconds():
            await publish_delayed(self.runtime.broker, message, early)
            return False
        if early > 0:
            await asyncio.sleep(early)
        return True

    async def fire_due(
        self, until: datetime, reminder_id: int | None = None, *, lapsed: bool = False
    ) -> int:
        """Ask for every follow-up due by ``until`` whose incident is still open, at most once
        each (with ``lapsed``, also those an earlier version left 'requesting'). Each round is
        one transaction: claimed, requested, committed once the broker has confirmed the
        requests. Returns how many were claimed."""
        claimed = 0
        while True:
            # Rolled back if the publish fails or this process dies before the commit: the
            # reminders are 'scheduled' again, for the next tick or the sweep. A request the
            # broker took before that is then asked for twice, with the same event id: the
            # notifier's claim sends one mail.
            async with self.runtime.pool.acquire() as conn, conn.transaction():
                fired = await store.claim_due(
                    conn,
                    self.runtime.name,
                    until,
                    reminder_id=reminder_id,
                    lease_seconds=self.settings.request_lease_seconds if lapsed else None,
                    limit=self.settings.fire_batch_size,
                    customer_gap_seconds=self.settings.customer_gap_seconds,
                )
                if fired:
                    await self._request(fired)
            if not fired:
                return claimed
            claimed += len(fired)
            if len(fired) < self.settings.fire_batch_size:
                return claimed

    async def _request(self, fired: list[store.Fired]) -> None:
        now = datetime.now(UTC)
        requests = [
            ReminderRequested(
                event_id=derived_event_id(f.reminder.incident_id, f"reminder:{f.reminder.kind}"),
                incident_id=f.reminder.incident_id,
                reminder_id=f.reminder.id,
                kind=f.reminder.kind,
                ticket_id=f.ticket_id,
                email=f.email,
                message=f.message,
                created_at=f.incident_created,
            )
            for f in fired
            if f.reminder.state == "requested"
        ]
        for f in fired:
            # Observability: how late the ticks (or the sweep) brought this reminder.
            record_reminder_lateness(f.reminder.kind, (now - f.reminder.due_at).total_seconds())
        # A few messages for the round (incidentflow.batched_events), each of a bounded size:
        # a message body is held whole in memory by the broker and by each consumer.
        await asyncio.gather(
            *(
                publish_batch(self.runtime.broker, batch)
                for batch in in_messages(requests, lambda r: r.routing_key(), REQUESTS_PER_MESSAGE)
            )
        )
        log.info(
            "reminders due",
            extra={"requested": len(requests), "skipped": len(fired) - len(requests)},
        )

    async def sweep_once(self) -> int:
        """Fire reminders the broker should have delivered long ago, and ask again for those
        whose request was never confirmed; returns how many."""
        grace = timedelta(seconds=self.settings.sweep_grace_seconds)
        swept = await self.fire_due(datetime.now(UTC) - grace, lapsed=True)
        if swept:
            log.warning("overdue reminders swept", extra={"reminders": swept})
        return swept

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
    @runtime.step(REMINDER_TICKETED)
    async def schedule_follow_ups(deliveries: list[Delivery[IncidentTicketed]]) -> None:
        """Recorded in one call for a batch; nothing is published per incident."""
        await reminders.schedule([delivery.event for delivery in deliveries])

    @runtime.step(REMINDER_MESSAGE, whole_batches=False)
    async def restart_follow_up(deliveries: list[Delivery[IncidentMessageReceived]]) -> None:
        (delivery,) = deliveries
        await reminders.restart_follow_up(delivery.event)

    @runtime.step(REMINDER_TICK, whole_batches=False)
    async def fire_tick(deliveries: list[Delivery[ReminderTick]]) -> None:
        (delivery,) = deliveries
        await reminders.on_tick(delivery.event)

    @runtime.step(REMINDER_DUE, whole_batches=False)
    async def fire_one(deliveries: list[Delivery[ReminderDue]]) -> None:
        (delivery,) = deliveries
        await reminders.on_due(delivery.event)

    runtime.on_started.append(reminders.start_sweeper)
    runtime.on_stopping.append(reminders.stop_sweeper)
