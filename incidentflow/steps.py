"""Steps: what a service does with the events of one queue, written once.

A step is one async function over a list of deliveries, each an event and whether this is
its last try. A message carrying one event is a batch of one; a message carrying a batch
(incidentflow.batched_events) reaches the step whole, in one call, so a step reads and writes
for all its events at once. The step says what to publish for each delivery
(``Delivery.emit``); once it has returned, the runtime publishes those events and logs their
lines, each under its own incident's trace (which the event carries), with tracing exported
or not.

When a step fails for a batch, the runtime hands the batch's events to it one at a time; the
delivery policy (incidentflow.messaging) then retries or dead-letters each failing event on
its own. What the failed call did for the other events is done again, so steps are
idempotent, as any redelivery requires.

Declared with ``ServiceRuntime.step``; ``whole_batches=False`` for a step that must see its
events one by one (sending a reminder mail: one failure must not resend the others).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faststream.rabbit import RabbitBroker

from contracts.events import Envelope
from incidentflow.messaging import BatchPublisher, is_last_delivery
from incidentflow.metrics import observe_steps
from incidentflow.tracing import each_traced, traced

E = TypeVar("E", bound=Envelope)


@dataclass(frozen=True)
class _Emitted:
    event: Envelope
    note: str
    fields: dict[str, Any]


@dataclass(eq=False)
class Delivery(Generic[E]):
    """One event handed to a step. ``last_try``: a failure now dead-letters it instead of
    retrying it later (a step that has a way to finish without the outside system, such as
    a fallback ticket id or a notification marked failed, takes it now)."""

    event: E
    last_try: bool = False
    _emitted: list[_Emitted] = field(default_factory=list)

    def emit(self, event: Envelope, note: str, **fields: Any) -> None:
        """Publish ``event`` once the step has returned, and log ``note`` with ``fields`` and
        the incident id, under this delivery's trace."""
        self._emitted.append(_Emitted(event, note, fields))


StepFunction = Callable[[list[Delivery[E]]], Awaitable[None]]


@dataclass(frozen=True)
class Step(Generic[E]):
    """A step as the runtime runs it: for a single message (``handle_one``, FastStream's
    handler) and for a whole batch (``handle_batch``, called by BatchedEvents)."""

    queue: str
    model: type[E]
    function: StepFunction[E]
    publisher: BatchPublisher
    log: logging.Logger
    broker: RabbitBroker

    async def handle_one(self, event: E) -> None:
        # FastStream's current message (for an event of a batch handled one by one, that
        # event's own: BatchedEvents) says how many tries came before. The broker's context
        # is looked up now: an application made around the broker gives it its own.
        message = self.broker.context.get_local("message")
        last_try = is_last_delivery(getattr(message, "headers", None))
        await self._run([Delivery(event, last_try)])

    async def handle_batch(self, events: list[Any]) -> None:
        """A batch's events in one call. Never their last try: a batch that fails goes one
        event at a time, and only there does an event reach its last try."""
        start = time.perf_counter()
        await self._run([Delivery(event) for event in events])
        observe_steps(self.queue, len(events), time.perf_counter() - start)

    async def _run(self, deliveries: list[Delivery[E]]) -> None:
        await self.function(deliveries)
        if len(deliveries) == 1:
            (delivery,) = deliveries
            if delivery._emitted:
                await traced(delivery.event.trace, self._announce(delivery))
            return
        # One failed: the batch goes one event at a time, and what went out goes again, as on
        # a redelivery (the next steps are idempotent).
        await each_traced((d.event.trace, self._announce(d)) for d in deliveries if d._emitted)

    async def _announce(self, delivery: Delivery[E]) -> None:
        incident_id = getattr(delivery.event, "incident_id", None)
        about = {} if incident_id is None else {"incident_id": str(incident_id)}
        for emitted in delivery._emitted:
            await self.publisher.publish(emitted.event)
            self.log.info(emitted.note, extra={**about, **emitted.fields})

    def subscriber_handler(self) -> Callable[[E], Awaitable[None]]:
        """``handle_one`` as a FastStream handler: its parameter annotated with the step's
        event model, which FastStream decodes the message into."""

        async def handle(event: Envelope) -> None:
            await self.handle_one(event)  # type: ignore[arg-type]

        handle.__annotations__ = {"event": self.model, "return": None}
        handle.__name__ = handle.__qualname__ = self.function.__name__
        handle.__doc__ = self.function.__doc__
        return handle
