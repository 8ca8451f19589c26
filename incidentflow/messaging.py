"""The broker every service uses, with the delivery guarantees FastStream leaves off by default.

- publisher confirms, persistent messages, unroutable messages raise (not silently dropped);
- bounded prefetch;
- a message whose payload does not match its contract goes straight to its dead-letter queue,
  with the validation error in its x-incidentflow-error header;
- any other failure is retried after a back-off through the delay queues (the message waits
  in the broker, not in the consumer), and dead-lettered after DELIVERY_LIMIT tries.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aio_pika import DeliveryMode, IncomingMessage, Message
from faststream import BaseMiddleware
from faststream.exceptions import AckMessage, HandlerException, NackMessage, RejectMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from opentelemetry import propagate
from pydantic import ValidationError

from contracts.events import Envelope
from contracts.topology import (
    DEAD_LETTERS,
    DELIVERY_LIMIT,
    EVENTS,
    WORK_ROUTES,
    DelayLevels,
    Route,
    passive,
    retry_routing_key,
)
from incidentflow.batched_events import (
    BATCH_CONTENT_TYPE,
    BATCH_HEADER,
    Part,
    consuming_queue,
    encode_parts,
    in_messages,
)
from incidentflow.metrics import record_failed_delivery, record_publish
from incidentflow.privacy import mask_text

log = logging.getLogger("incidentflow.messaging")

MAX_BACKOFF_SECONDS = 30
# A publish not confirmed by then has failed. Enforced around the whole publish: aio-pika's
# own timeout covers the confirm, not the write before it, which a connection dropped at the
# wrong moment can leave pending for minutes (a chaos run's stalled outbox relay).
PUBLISH_TIMEOUT_SECONDS = 10.0
# How many times a message was sent back through the delay queues after failing.
RETRIES_HEADER = "x-incidentflow-retries"


def retry_backoff(attempt: int) -> int:
    """Seconds a failed message waits before its next try: 1, 2, 4, 8, 16, 30, 30 …"""
    return int(min(MAX_BACKOFF_SECONDS, 2 ** max(attempt, 0)))


def earlier_attempts(headers: Mapping[str, Any] | None) -> int:
    """Tries of this message that failed before this delivery: the retries it went through
    the delay queues for, plus the broker's redeliveries of this copy (x-delivery-count)."""
    found = headers or {}
    return _count(found.get(RETRIES_HEADER)) + _count(found.get("x-delivery-count"))


def _count(value: Any) -> int:
    """A count from a header anyone who may publish could have set: a whole number from 0
    to DELIVERY_LIMIT, else 0. A negative or malformed one must neither crash the delivery
    policy nor keep a message from ever reaching its limit."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return min(max(value, 0), DELIVERY_LIMIT)
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        digits = value.strip()
        # ASCII digits only ("²" is a digit to isdigit, not to int), and few of them: int()
        # refuses strings past 4,300 digits, and a count that long is past the limit anyway.
        if digits.isascii() and digits.isdecimal():
            return DELIVERY_LIMIT if len(digits) > 6 else min(int(digits), DELIVERY_LIMIT)
    return 0


def is_last_delivery(headers: Mapping[str, Any] | None) -> bool:
    """True on the try after which a failing message is dead-lettered, not retried."""
    return earlier_attempts(headers) >= DELIVERY_LIMIT


class DeliveryPolicy(BaseMiddleware):
    """Poison messages to the dead-letter queue at once; transient failures retried slowly."""

    async def consume_scope(
        self,
        call_next: Callable[[StreamMessage[Any]], Awaitable[Any]],
        msg: StreamMessage[Any],
    ) -> Any:
        try:
            return await call_next(msg)
        except HandlerException:
            raise
        except ValidationError as exc:
            if exc.title in _model_names(Envelope):
                # Our own code built an invalid event: a bug or bad data, not a bad message.
                raise await self._retry_later(msg, exc) from exc
            log.error(
                "invalid payload, dead-lettered",
                extra={"message_id": msg.message_id, "errors": exc.errors(include_url=False)},
            )
            raise await self._dead_letter(
                msg, INVALID_PAYLOAD, describe_validation_error(exc)
            ) from exc
        except Exception as exc:
            raise await self._retry_later(msg, exc) from exc

    async def _retry_later(self, msg: StreamMessage[Any], exc: Exception) -> HandlerException:
        """Send a copy through the delay queues back to this queue and ack this one; at the
        limit, dead-letter it. Waiting in the broker frees the consumer's prefetch slot, and
        the wait survives a restart of the consumer."""
        attempt = earlier_attempts(msg.headers)
        error = mask_text(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_LENGTH]
        if attempt >= DELIVERY_LIMIT:
            log.error(
                "handler failed, retries exhausted, dead-lettered",
                extra={"message_id": msg.message_id, "attempt": attempt + 1, "error": repr(exc)},
            )
            return await self._dead_letter(msg, RETRIES_EXHAUSTED, error)
        delay = retry_backoff(attempt)
        log.warning(
            "handler failed, will retry",
            extra={
                "message_id": msg.message_id,
                "attempt": attempt + 1,
                "retry_in_seconds": delay,
                "error": repr(exc),
            },
        )
        queue = consuming_queue(self.context)
        record_failed_delivery(queue, "retried")
        if queue is not None and await self._republish(
            msg,
            exchange=passive(DelayLevels.entry_exchange(delay)),
            routing_key=DelayLevels.routing_key(delay, retry_routing_key(queue)),
            headers={RETRIES_HEADER: attempt + 1, ERROR_HEADER: error},
        ):
            return AckMessage()
        # No way back through the delay queues (a queue without its retry binding, the
        # broker refusing): hold the message here instead, then hand it back.
        await asyncio.sleep(delay)
        return NackMessage(requeue=True)

    async def _dead_letter(
        self, msg: StreamMessage[Any], reason: str, error: str
    ) -> HandlerException:
        """Put a copy carrying why into the message's DLQ and ack the original; a bare reject
        (the broker's own dead-lettering) only when that copy cannot be made."""
        queue = consuming_queue(self.context)
        record_failed_delivery(queue, "dead-lettered")
        if queue is not None and await self._republish(
            msg,
            exchange=passive(DEAD_LETTERS),
            routing_key=queue,  # the DLQ's binding key is its work queue's name
            headers={ERROR_HEADER: error, REASON_HEADER: reason, QUEUE_HEADER: queue},
        ):
            return AckMessage()
        return RejectMessage()

    async def _republish(
        self,
        msg: StreamMessage[Any],
        *,
        exchange: RabbitExchange,
        routing_key: str,
        headers: Mapping[str, Any],
    ) -> bool:
        """Publish a copy of ``msg`` with ``headers`` added; True once the broker confirmed."""
        broker = self.context.get_local("broker")
        raw = msg.raw_message
        if not isinstance(broker, RabbitBroker) or not isinstance(raw, IncomingMessage):
            return False
        # From ``msg``, not the raw delivery: for an event of a batch (batched_events), msg
        # is that event alone, and only it is retried or dead-lettered.
        kept = {k: v for k, v in (msg.headers or {}).items() if k not in _PER_DELIVERY_HEADERS}
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await broker.publish(
                    msg.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    headers={**kept, **headers},
                    persist=True,
                    mandatory=True,
                    message_id=msg.message_id,
                    message_type=raw.type,
                    content_type=msg.content_type,
                    content_encoding=raw.content_encoding,
                    correlation_id=msg.correlation_id,
                    timestamp=raw.timestamp,
                    timeout=PUBLISH_TIMEOUT_SECONDS,
                )
        except Exception as publish_error:
            log.warning(
                "could not republish the message",
                extra={
                    "message_id": msg.message_id,
                    "exchange": exchange.name,
                    "error": repr(publish_error),
                },
            )
            return False
        return True


ERROR_HEADER = "x-incidentflow-error"
REASON_HEADER = "x-incidentflow-reason"
QUEUE_HEADER = "x-incidentflow-queue"
INVALID_PAYLOAD = "invalid-payload"
RETRIES_EXHAUSTED = "retries-exhausted"
MAX_ERROR_LENGTH = 1000
# Set by the broker for one delivery or one dead-lettering; a republished copy starts afresh.
_PER_DELIVERY_HEADERS = frozenset({"x-delivery-count", "x-death"})


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message; …`` without the input values, masked and truncated: it travels in a
    message header and is printed by ``incidentflow dlq show``."""
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    text = mask_text("; ".join(parts))
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _model_names(cls: type[Envelope]) -> set[str]:
    """Names of the contract models. A ValidationError titled with one came from our code
    building that event; one titled otherwise came from parsing the incoming message."""
    return {cls.__name__}.union(*(_model_names(sub) for sub in cls.__subclasses__()))


def make_broker(url: str, prefetch: int, *, graceful_timeout: float = 20.0) -> RabbitBroker:
    return RabbitBroker(
        url,
        default_channel=Channel(
            prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=(DeliveryPolicy,),
        graceful_timeout=graceful_timeout,
        # Our logger instead of FastStream's own non-propagating one: its lines then go
        # through the JSON handler and its PII masking (incidentflow.logs).
        logger=logging.getLogger("incidentflow.broker"),
        log_level=logging.DEBUG,
    )


async def publish_event(
    broker: RabbitBroker,
    event: Envelope,
    *,
    exchange: RabbitExchange = EVENTS,
    routing_key: str | None = None,
) -> None:
    """Publish persistently and wait for the broker's confirm (TimeoutError after
    PUBLISH_TIMEOUT_SECONDS)."""
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        await broker.publish(
            event,
            exchange=exchange,
            routing_key=routing_key or event.routing_key(),
            persist=True,
            mandatory=event.requires_listener,
            message_id=str(event.event_id),
            message_type=event.name,
            timeout=PUBLISH_TIMEOUT_SECONDS,
        )


async def publish_batch(
    broker: RabbitBroker,
    events: Sequence[Envelope],
    *,
    headers: Sequence[Mapping[str, str]] | None = None,
    exchange: RabbitExchange = EVENTS,
) -> None:
    """Publish ``events`` (one kind) as one message and wait for the broker's confirm: a batch
    (incidentflow.batched_events), or an ordinary message when there is one event.

    ``headers`` are each event's own (its trace context); by default the current context's.
    """
    if not events:
        return
    first = events[0]
    if any(e.routing_key() != first.routing_key() for e in events):
        raise ValueError("a batch carries events of one kind")
    if headers is None:
        current: dict[str, str] = {}
        propagate.inject(current)
        headers = [current] * len(events)
    await publish_parts(
        broker,
        [Part.of(event, own) for event, own in zip(events, headers, strict=True)],
        kind=first.name,
        routing_key=first.routing_key(),
        mandatory=first.requires_listener,
        exchange=exchange,
    )


async def publish_parts(
    broker: RabbitBroker,
    parts: Sequence[Part],
    *,
    kind: str,
    routing_key: str,
    mandatory: bool,
    exchange: RabbitExchange = EVENTS,
) -> None:
    """Publish events already encoded (one kind, ``kind`` and ``routing_key`` theirs) as one
    message, as publish_batch does: ingest's outbox relay has each event's JSON stored.

    Straight to FastStream's confirming channel: its publish builds a command and runs five
    middleware scopes per message, about as much CPU again as aio-pika's publish itself
    (docs/performance.md). What those add is added here: the trace context (each part's
    headers), and FastStream's publish metrics.
    """
    if not parts:
        return
    if len(parts) == 1:
        body = parts[0].body
        message_headers: dict[str, Any] = dict(parts[0].headers)
        content_type, message_id = "application/json", parts[0].message_id
    else:
        body = encode_parts(parts)
        message_headers = {BATCH_HEADER: len(parts)}
        content_type, message_id = BATCH_CONTENT_TYPE, str(uuid.uuid4())
    message = Message(
        body,
        headers=message_headers,
        content_type=content_type,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=message_id,
        type=kind,
        timestamp=datetime.now(UTC),
        app_id="incidentflow",
    )
    target = await broker.declare_exchange(exchange)
    error: BaseException | None = None
    start = time.perf_counter()
    try:
        # One timeout around the publish; aio-pika's own (``timeout=``) runs each step of it
        # as a task through wait_for, ~60 µs of CPU per message here.
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await target.publish(message, routing_key=routing_key, mandatory=mandatory)
    except BaseException as exc:
        error = exc
        raise
    finally:
        destination = f"{exchange.name}.{routing_key}"
        record_publish(broker, destination, error, time.perf_counter() - start, len(parts))


# An event to publish, its own headers, and its caller's wait for the confirm.
_Pending = tuple[Envelope, dict[str, str], asyncio.Future[None]]


class BatchPublisher:
    """``await publish(event)`` returns once the broker confirmed the event.

    What handlers publish in the same turn of the event loop goes together, one message per
    kind: handlers woken by one group commit (incidentflow.batching) or one batch of input
    publish together, with no timer and no wait for an earlier batch's confirm, so a quiet
    service still sends each event at once, alone. Each event keeps its own trace context.
    """

    def __init__(
        self, broker: RabbitBroker, *, exchange: RabbitExchange = EVENTS, max_size: int = 100
    ) -> None:
        self._broker = broker
        self._exchange = exchange
        self._max_size = max_size
        self._pending: list[_Pending] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def publish(self, event: Envelope) -> None:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, headers, future))
        if len(self._pending) == 1:
            # After the callbacks of this turn: the handlers woken with this one add theirs.
            loop.call_soon(self._send_pending)
        # Shielded: a cancelled caller's event may be in flight already; only its wait ends.
        await asyncio.shield(future)

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        for batch in in_messages(pending, lambda item: item[0].routing_key(), self._max_size):
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, items: list[_Pending]) -> None:
        try:
            await publish_batch(
                self._broker,
                [event for event, _, _ in items],
                headers=[headers for _, headers, _ in items],
                exchange=self._exchange,
            )
        except Exception as exc:
            if len(items) == 1:
                _settle(items[0][2], exc)
                return
            # Each caller gets its own event's outcome (an event of the failed batch may have
            # reached the broker and now goes twice, which consumers allow, as redeliveries).
            log.warning(
                "batch publish failed, publishing its events one by one",
                extra={"events": len(items), "error": repr(exc)},
            )
            await asyncio.gather(*(self._send([item]) for item in items))
            return
        except BaseException as exc:  # cancelled: shutting down
            for _, _, future in items:
                _settle(future, exc)
            raise
        for _, _, future in items:
            _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


async def publish_delayed(broker: RabbitBroker, event: Envelope, delay_seconds: float) -> None:
    """Deliver ``event`` to the queues bound for it after ``delay_seconds`` (whole seconds)."""
    delay = max(0, round(delay_seconds))
    await publish_event(
        broker,
        event,
        exchange=passive(DelayLevels.entry_exchange(delay)),
        routing_key=DelayLevels.routing_key(delay, event.routing_key()),
    )


async def declare_routes(broker: RabbitBroker, routes: tuple[Route, ...]) -> None:
    """What ``routes``' subscribers need besides their work queues: the delay levels, each
    work queue's binding for its retries, and its dead-letter queue."""
    await declare_delay_levels(broker)
    delivery = await broker.declare_exchange(DelayLevels.DELIVERY)
    dlx = await broker.declare_exchange(DEAD_LETTERS)
    for route in routes:
        work = await broker.declare_queue(route.queue)
        await work.bind(delivery, routing_key=route.retry_binding_key)
        dlq = await broker.declare_queue(route.dead_letter_queue)
        await dlq.bind(dlx, routing_key=route.queue_name)


async def declare_delay_levels(broker: RabbitBroker) -> None:
    """Declare the delay exchanges, their TTL queues and the bindings between them."""
    delivery = await broker.declare_exchange(DelayLevels.DELIVERY)
    previous = delivery
    for level in range(DelayLevels.LEVELS):
        exchange = await broker.declare_exchange(DelayLevels.exchange(level))
        queue = await broker.declare_queue(DelayLevels.queue(level))
        await queue.bind(exchange, routing_key=DelayLevels.binding_pattern(level, "1"))
        # A 0 digit skips this level's wait and moves on to the next lower level.
        await previous.bind(exchange, routing_key=DelayLevels.binding_pattern(level, "0"))
        previous = exchange


async def declare_topology(broker: RabbitBroker, routes: tuple[Route, ...]) -> None:
    """Everything a fresh broker needs: exchanges, work queues with their DLQs, delay levels."""
    await declare_routes(broker, routes)
    for route in routes:
        source = await broker.declare_exchange(route.source)
        queue = await broker.declare_queue(route.queue)
        await queue.bind(source, routing_key=route.binding_key)


async def declare_all(url: str) -> None:
    """Declare the whole topology on the broker at ``url`` from a short-lived connection."""
    broker = make_broker(url, prefetch=1)
    await broker.connect()
    try:
        await declare_topology(broker, WORK_ROUTES)
    finally:
        await broker.stop()
