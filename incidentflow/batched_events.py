"""Batched events: many events of one kind in one broker message, each still handled, retried
and dead-lettered on its own.

A message costs the publisher, RabbitMQ and the consumer about 100 µs of CPU each on this
project's machines (docs/performance.md), whatever its size. A busy producer (ticketing at
load, a reminder tick) therefore sends what it has ready together, as one message; an idle one
sends each event alone, as an ordinary message (incidentflow.messaging.publish_batch).

Wire format: content type ``application/x-ndjson`` and the header ``x-incidentflow-batch``
(how many events). The body holds two lines per event: a JSON object with the event's message
id and its own headers (its trace context: events of different incidents belong to different
traces), then the event's JSON exactly as a single message would carry it. Compact JSON has no
raw newline, so the body splits without parsing the events, and each event is decoded once, by
its subscriber, as if it had come alone.

Consuming: ``BatchedEvents``, a broker middleware inside FastStream's message metrics only
(incidentflow.metrics.instrument_messaging), passes each event through the rest of the chain
(trace context, step timer, delivery policy, handler) as a message of its own, concurrently.
The delivery policy retries or dead-letters a failing event alone (it republishes that event's
bytes), and the batch is acked once each event was handled or so parked. If one could not be
parked (the broker refused the copy), the whole batch is handed back and its events handled
again, which handlers allow: they are idempotent, as any redelivery requires.

Whole batches: a queue's step (incidentflow.steps) takes all the events of a batch in one
call, past the per-event chain (about 100 µs of CPU per event, docs/performance.md). A batch
whose events all decode goes to it so; if it decodes or is handled only in part, it goes the
per-event way instead, and each event is retried or dead-lettered alone.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from faststream import BaseMiddleware
from faststream.exceptions import AckMessage, NackMessage
from faststream.message import StreamMessage
from pydantic import ValidationError

from contracts.events import Envelope

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo

log = logging.getLogger("incidentflow.messaging")

BATCH_HEADER = "x-incidentflow-batch"
BATCH_CONTENT_TYPE = "application/x-ndjson"


@dataclass(frozen=True)
class Part:
    """One event of a batch: what its message would have carried had it come alone."""

    message_id: str
    headers: dict[str, Any]
    body: bytes

    @classmethod
    def of(cls, event: Envelope, headers: Mapping[str, str]) -> Part:
        return cls(str(event.event_id), dict(headers), event.model_dump_json().encode())


class BatchStep(Protocol):
    """What takes all the events of a batch in one call (incidentflow.steps.Step); ``model``
    decodes each, as the queue's subscriber would."""

    @property
    def model(self) -> type[Envelope]: ...

    async def handle_batch(self, events: list[Any]) -> None: ...


T = TypeVar("T")


def in_messages(items: Sequence[T], kind: Callable[[T], str], size: int) -> Iterator[list[T]]:
    """``items`` as the batches to send them in: one kind (routing key) each, in order, at
    most ``size`` events each."""
    kinds: dict[str, list[T]] = {}
    for item in items:
        kinds.setdefault(kind(item), []).append(item)
    for group in kinds.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def encode_batch(events: Sequence[tuple[Envelope, Mapping[str, str]]]) -> bytes:
    """The body of a batch of ``(event, its own headers)``."""
    return encode_parts([Part.of(event, headers) for event, headers in events])


def encode_parts(parts: Sequence[Part]) -> bytes:
    """The body of a batch of events already encoded (each body one line of JSON)."""
    lines: list[bytes] = []
    for part in parts:
        if b"\n" in part.body:
            raise ValueError(f"event {part.message_id}: a batched event is one line of JSON")
        meta = {"message_id": part.message_id, "headers": part.headers}
        lines.append(json.dumps(meta, separators=(",", ":")).encode())
        lines.append(part.body)
    return b"\n".join(lines)


def decode_batch(body: bytes) -> list[Part]:
    """The events of a batch body; ValueError if it is not one."""
    lines = body.split(b"\n")
    if len(lines) % 2:
        raise ValueError("a batch has two lines per event")
    parts: list[Part] = []
    for meta_line, event_line in zip(lines[::2], lines[1::2], strict=True):
        meta = json.loads(meta_line)
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("message_id"), str)
            or not isinstance(meta.get("headers"), dict)
        ):
            raise ValueError("a batch's event lines follow an object with message_id and headers")
        parts.append(Part(meta["message_id"], meta["headers"], event_line))
    return parts


def consuming_queue(context: ContextRepo) -> str | None:
    """The name of the queue the message being handled came from."""
    # FastStream puts the consuming subscriber in the context before any middleware runs.
    name = getattr(getattr(context.get_local("handler_"), "queue", None), "name", None)
    return name if isinstance(name, str) else None


def is_batch(headers: Mapping[str, Any] | None) -> bool:
    return BATCH_HEADER in (headers or {})


def event_bodies(body: bytes, headers: Mapping[str, Any] | None) -> list[bytes]:
    """The JSON of each event a message carries, batch or not (for readers of a queue)."""
    return [part.body for part in decode_batch(body)] if is_batch(headers) else [body]


class BatchedEvents(BaseMiddleware):
    """Hands each event of a batch to the rest of the chain as a message of its own.

    The broker's prefetch counts messages; ``slots`` bounds the events of batches handled at
    once in this process (built by ``splitting``), so that a prefetch of 200 batches is not
    10,000 handlers contending for one database pool.
    """

    def __init__(
        self,
        msg: Any | None,
        /,
        *,
        context: ContextRepo,
        slots: asyncio.Semaphore,
        whole: Mapping[str, BatchStep],
    ) -> None:
        super().__init__(msg, context=context)
        self._slots = slots
        self._whole = whole

    @classmethod
    def splitting(
        cls, events_in_flight: int, whole: Mapping[str, BatchStep] | None = None
    ) -> Callable[..., BatchedEvents]:
        """The middleware to install: its instances (one per message) share one bound, and
        ``whole``, the steps that take batches whole, by queue name (filled in as services
        declare them)."""
        return partial(
            cls, slots=asyncio.Semaphore(events_in_flight), whole={} if whole is None else whole
        )

    async def consume_scope(
        self,
        call_next: Callable[[StreamMessage[Any]], Awaitable[Any]],
        msg: StreamMessage[Any],
    ) -> Any:
        if not is_batch(msg.headers):
            return await call_next(msg)
        try:
            parts = decode_batch(msg.body)
        except ValueError:
            # Handled whole: its decoding fails, and the delivery policy dead-letters it
            # with the reason.
            return await call_next(msg)
        whole = self._whole.get(consuming_queue(self.context) or "")
        if whole is not None and await self._handled_whole(whole, msg, parts):
            return None
        # A slot before each event's task: the waiting is one coroutine per batch, not a
        # task per event (thousands of waiters cost more CPU than the handlers).
        handling: list[asyncio.Task[Any]] = []
        try:
            for part in parts:
                await self._slots.acquire()
                handling.append(asyncio.create_task(self._handle(call_next, msg, part)))
        except BaseException:
            for task in handling:
                task.cancel()
            raise
        outcomes = await asyncio.gather(*handling, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome  # shutting down: the unacked batch comes back whole
        unparked = [
            o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, AckMessage)
        ]
        if unparked:
            log.warning(
                "batch handed back: an event of it could be neither handled nor parked",
                extra={
                    "message_id": msg.message_id,
                    "events": len(parts),
                    "error": repr(unparked[0]),
                },
            )
            raise NackMessage(requeue=True)
        return None

    async def _handled_whole(
        self, whole: BatchStep, batch: StreamMessage[Any], parts: list[Part]
    ) -> bool:
        """True if ``whole`` handled every event of the batch; False sends the batch the
        per-event way (steps are idempotent: what this call did is done again)."""
        try:
            events = [whole.model.model_validate_json(part.body) for part in parts]
        except ValidationError:
            return False  # the per-event way dead-letters the bad event alone, with why
        # One slot: one call, one write (a slot per event could deadlock batches larger
        # than the bound, each holding part of it).
        async with self._slots:
            try:
                await whole.handle_batch(events)
            except Exception as exc:
                log.warning(
                    "batch failed whole, handled event by event",
                    extra={
                        "message_id": batch.message_id,
                        "events": len(parts),
                        "error": repr(exc),
                    },
                )
                return False
        return True

    async def _handle(
        self,
        call_next: Callable[[StreamMessage[Any]], Awaitable[Any]],
        batch: StreamMessage[Any],
        part: Part,
    ) -> Any:
        # A copy has its own decode cache (FastStream's StreamMessage.__copy__); raw_message
        # stays the batch's, which only the acknowledgement middleware settles.
        single = copy.copy(batch)
        single.body = part.body
        single.content_type = "application/json"
        single.message_id = single.correlation_id = part.message_id
        single.headers = {
            **{k: v for k, v in batch.headers.items() if k != BATCH_HEADER},
            **part.headers,
        }
        try:
            # What handlers ask for as their message (its headers: how many tries so far).
            with self.context.scope("message", single):
                return await call_next(single)
        finally:
            self._slots.release()  # taken for it by consume_scope
