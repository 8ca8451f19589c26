"""The broker every service uses, with the delivery guarantees FastStream leaves off by default.

- publisher confirms, persistent messages, unroutable messages raise (not silently dropped);
- bounded prefetch;
- a message whose payload does not match its contract goes straight to its dead-letter queue,
  with the validation error in its x-incidentflow-error header;
- any other failure is retried after a back-off, and dead-lettered after DELIVERY_LIMIT tries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika import IncomingMessage
from faststream import BaseMiddleware
from faststream.exceptions import AckMessage, HandlerException, NackMessage, RejectMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from pydantic import ValidationError

from contracts.events import Event
from contracts.topology import DEAD_LETTERS, EVENTS, WORK_ROUTES, DelayLevels, Route
from incidentflow.privacy import mask_text

log = logging.getLogger("incidentflow.messaging")

MAX_BACKOFF_SECONDS = 30.0


def retry_backoff(attempt: int) -> float:
    """Seconds to hold a failed message before handing it back: 0.5, 1, 2, 4 … 30."""
    return float(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** max(attempt, 0)))


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
            if exc.title in _model_names(Event):
                # Our own code built an invalid event: a bug or bad data, not a bad message.
                raise await _retry_later(msg, exc) from exc
            log.error(
                "invalid payload, dead-lettered",
                extra={"message_id": msg.message_id, "errors": exc.errors(include_url=False)},
            )
            if await self._dead_letter_with_error(msg, exc):
                raise AckMessage from exc
            # The broker's own dead-lettering still keeps the message, only without the error.
            raise RejectMessage from exc
        except Exception as exc:
            raise await _retry_later(msg, exc) from exc

    async def _dead_letter_with_error(self, msg: StreamMessage[Any], exc: ValidationError) -> bool:
        """Put a copy carrying the validation error into the message's DLQ; True once the
        broker confirmed it, so the original may be acked (a bare reject cannot carry why)."""
        broker = self.context.get_local("broker")
        queue = getattr(getattr(self.context.get_local("handler_"), "queue", None), "name", None)
        raw = msg.raw_message
        if (
            not isinstance(broker, RabbitBroker)
            or not queue
            or not isinstance(raw, IncomingMessage)
        ):
            return False
        headers = {
            **(raw.headers or {}),
            ERROR_HEADER: describe_validation_error(exc),
            REASON_HEADER: INVALID_PAYLOAD,
            QUEUE_HEADER: queue,
        }
        try:
            await broker.publish(
                raw.body,
                exchange=DEAD_LETTERS,
                routing_key=queue,  # the DLQ's binding key is its work queue's name
                headers=headers,
                persist=True,
                mandatory=True,
                message_id=raw.message_id,
                message_type=raw.type,
                content_type=raw.content_type,
                content_encoding=raw.content_encoding,
                correlation_id=raw.correlation_id,
                timestamp=raw.timestamp,
                timeout=10,
            )
        except Exception as publish_error:
            log.warning(
                "could not dead-letter with the error, rejecting instead",
                extra={"message_id": msg.message_id, "error": repr(publish_error)},
            )
            return False
        return True


ERROR_HEADER = "x-incidentflow-error"
REASON_HEADER = "x-incidentflow-reason"
QUEUE_HEADER = "x-incidentflow-queue"
INVALID_PAYLOAD = "invalid-payload"
MAX_ERROR_LENGTH = 1000


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message; …`` without the input values, masked and truncated: it travels in a
    message header and is printed by ``incidentflow dlq show``."""
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    text = mask_text("; ".join(parts))
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


async def _retry_later(msg: StreamMessage[Any], exc: Exception) -> NackMessage:
    attempt = int((msg.headers or {}).get("x-delivery-count", 0) or 0)
    log.warning(
        "handler failed, will retry",
        extra={"message_id": msg.message_id, "attempt": attempt + 1, "error": repr(exc)},
    )
    # Holding the message delays the redelivery: a database restart is ridden out
    # instead of burning through the delivery limit in milliseconds.
    await asyncio.sleep(retry_backoff(attempt))
    return NackMessage(requeue=True)


def _model_names(cls: type[Event]) -> set[str]:
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
    event: Event,
    *,
    exchange: RabbitExchange = EVENTS,
    routing_key: str | None = None,
) -> None:
    """Publish persistently and wait for the broker's confirm."""
    await broker.publish(
        event,
        exchange=exchange,
        routing_key=routing_key or event.routing_key(),
        persist=True,
        mandatory=event.requires_listener,
        message_id=str(event.event_id),
        message_type=event.name,
        timeout=10,
    )


async def publish_delayed(broker: RabbitBroker, event: Event, delay_seconds: float) -> None:
    """Deliver ``event`` to the queues bound for it after ``delay_seconds`` (whole seconds)."""
    delay = max(0, round(delay_seconds))
    await publish_event(
        broker,
        event,
        exchange=DelayLevels.entry_exchange(delay),
        routing_key=DelayLevels.routing_key(delay, event.routing_key()),
    )


async def declare_routes(broker: RabbitBroker, routes: tuple[Route, ...]) -> None:
    """Declare the dead-letter queues of ``routes`` (the work queues come with subscribers)."""
    dlx = await broker.declare_exchange(DEAD_LETTERS)
    for route in routes:
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
    for route in routes:
        source = await broker.declare_exchange(route.source)
        queue = await broker.declare_queue(route.queue)
        await queue.bind(source, routing_key=route.binding_key)
    await declare_routes(broker, routes)
    await declare_delay_levels(broker)


async def declare_all(url: str) -> None:
    """Declare the whole topology on the broker at ``url`` from a short-lived connection."""
    broker = make_broker(url, prefetch=1)
    await broker.connect()
    try:
        await declare_topology(broker, WORK_ROUTES)
    finally:
        await broker.stop()
