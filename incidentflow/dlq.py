"""Dead-letter queues: count, inspect, replay to the original work queue, purge (audited)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import ChannelNotFoundEntity

from contracts.topology import WORK_ROUTES, Route
from incidentflow.batched_events import Part, decode_batch, encode_parts, is_batch
from incidentflow.erasure import ERASED
from incidentflow.messaging import ERROR_HEADER, QUEUE_HEADER, REASON_HEADER, RETRIES_HEADER

# Set by the broker on dead-lettering or redelivery, or by our retries: a replayed message
# starts a fresh life, so its retry count, back-off and death history begin again.
_BROKER_HEADERS = ("x-death", "x-delivery-count", RETRIES_HEADER)
_BROKER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")
REPLAYED_FROM_HEADER = "x-incidentflow-replayed-from"
REPLAYS_HEADER = "x-incidentflow-replays"

DEAD_LETTER_ROUTES: dict[str, Route] = {
    route.dead_letter_queue.name: route for route in WORK_ROUTES
}


class UnknownQueue(LookupError):
    """Not the name of a dead-letter queue (nor of a work queue that has one)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown dead-letter queue {name!r}; valid: {', '.join(sorted(DEAD_LETTER_ROUTES))}"
        )


def resolve(name: str) -> Route:
    """The route whose DLQ is ``name``; a work queue's name stands for its DLQ too."""
    for route in WORK_ROUTES:
        if name in (route.dead_letter_queue.name, route.queue_name):
            return route
    raise UnknownQueue(name)


@dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to know of one dead-lettered message."""

    message_id: str | None
    event: str | None
    incident_id: str | None
    original_queue: str | None
    reason: str | None
    deaths: int | None
    error: str | None

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        headers: Mapping[str, Any] = message.headers or {}
        death = _first_death(headers)
        routing_keys = death.get("routing-keys") or []
        return cls(
            message_id=message.message_id,
            event=message.type or (_text(routing_keys[0]) if routing_keys else None),
            incident_id=_incident_id(message.body),
            original_queue=_text(
                headers.get(QUEUE_HEADER)
                or headers.get("x-first-death-queue")
                or death.get("queue")
            ),
            reason=_text(headers.get(REASON_HEADER) or death.get("reason")),
            deaths=int(death["count"]) if "count" in death else None,
            error=_text(headers.get(ERROR_HEADER)),
        )

    def line(self) -> str:
        """One greppable line: ``key=value`` pairs, the free-text error JSON-quoted last."""
        fields = {
            "message_id": self.message_id,
            "event": self.event,
            "incident_id": self.incident_id,
            "queue": self.original_queue,
            "reason": self.reason,
            "deaths": self.deaths,
        }
        text = " ".join(f"{key}={'-' if value is None else value}" for key, value in fields.items())
        return f"{text} error={json.dumps(self.error, ensure_ascii=False)}" if self.error else text


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _incident_id(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    value = payload.get("incident_id") if isinstance(payload, dict) else None
    return str(value) if value is not None else None


async def _passive(channel: AbstractChannel, name: str) -> AbstractQueue:
    return await channel.declare_queue(name, passive=True)


async def counts(connection: AbstractConnection) -> list[tuple[str, int | None]]:
    """Every DLQ with its message count; None for one not declared yet."""
    result: list[tuple[str, int | None]] = []
    for name in DEAD_LETTER_ROUTES:
        # A failed passive declare closes its channel: one channel per queue.
        channel = await connection.channel()
        try:
            queue = await _passive(channel, name)
            result.append((name, queue.declaration_result.message_count))
        except ChannelNotFoundEntity:
            result.append((name, None))
        finally:
            if not channel.is_closed:
                await channel.close()
    return result


async def browse(connection: AbstractConnection, route: Route, limit: int) -> list[DeadLetter]:
    """The first ``limit`` messages of the route's DLQ, left where they are.

    Gets them unacked, then hands them all back with one ``basic.nack(multiple, requeue)``:
    a quorum queue puts returned messages back at its head in their order, so repeated shows
    see the same order (one consumer holding and returning messages one by one would rotate
    them). nack rather than reject: RabbitMQ 4.3+ counts a reject as a failed delivery.
    """
    channel = await connection.channel()
    try:
        queue = await _passive(channel, route.dead_letter_queue.name)
        held: list[AbstractIncomingMessage] = []
        while len(held) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
        if held:
            await held[-1].nack(multiple=True, requeue=True)
        return [DeadLetter.of(message) for message in held]
    finally:
        await channel.close()


def _replay_headers(message: AbstractIncomingMessage, dead_letter_queue: str) -> dict[str, Any]:
    headers = {
        key: value
        for key, value in (message.headers or {}).items()
        if key not in (*_BROKER_HEADERS, ERROR_HEADER, REASON_HEADER, QUEUE_HEADER)
        and not key.startswith(_BROKER_HEADER_PREFIXES)
    }
    previous = headers.get(REPLAYS_HEADER)
    headers[REPLAYS_HEADER] = (int(previous) if isinstance(previous, int) else 0) + 1
    headers[REPLAYED_FROM_HEADER] = dead_letter_queue
    return headers


async def _send_copy(
    channel: AbstractChannel,
    original: AbstractIncomingMessage,
    body: bytes,
    headers: dict[str, Any],
    queue: str,
) -> None:
    """A persistent copy of ``original`` (its properties, this body and these headers) to
    ``queue`` through the default exchange, confirmed by the broker: raises if it is not."""
    await channel.default_exchange.publish(
        aio_pika.Message(
            body,
            headers=headers,
            content_type=original.content_type,
            content_encoding=original.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=original.message_id,
            correlation_id=original.correlation_id,
            timestamp=original.timestamp,
            type=original.type,
            app_id=original.app_id,
        ),
        routing_key=queue,
        mandatory=True,
        timeout=10,
    )


async def record_replay(
    conn: asyncpg.Connection, queue: str, letter: DeadLetter, operator: str
) -> datetime:
    replayed_at: datetime = await conn.fetchval(
        """
        INSERT INTO dlq_replays (queue, original_queue, message_id, event, incident_id, operator)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING replayed_at
        """,
        queue,
        letter.original_queue,
        letter.message_id,
        letter.event,
        letter.incident_id,
        operator,
    )
    return replayed_at


async def replay(
    connection: AbstractConnection,
    conn: asyncpg.Connection,
    route: Route,
    operator: str,
    message_ids: frozenset[str] | None = None,
) -> list[DeadLetter]:
    """Republish the route's dead letters (all, or those with ``message_ids``) to its work
    queue, each confirmed by the broker and audited before its DLQ copy is acked.

    A crash between publish and ack leaves both copies: at worst a duplicate, which the
    idempotent consumers absorb; never a loss. Messages not asked for are handed back as
    they were. Only the messages present at the start are looked at, so messages
    dead-lettered meanwhile cannot keep the command going.
    """
    dlq = route.dead_letter_queue.name
    # on_return_raises: an unroutable replay fails here instead of vanishing.
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    replayed: list[DeadLetter] = []
    skipped: list[AbstractIncomingMessage] = []
    try:
        queue = await _passive(channel, dlq)
        await _passive(channel, route.queue_name)  # the target exists, or nothing is taken
        present = queue.declaration_result.message_count or 0
        for _ in range(present):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            if message_ids is not None and message.message_id not in message_ids:
                skipped.append(message)
                continue
            letter = DeadLetter.of(message)
            await _send_copy(
                channel, message, message.body, _replay_headers(message, dlq), route.queue_name
            )
            await record_replay(conn, dlq, letter, operator)
            await message.ack()
            # Every copy with a wanted id: at-least-once dead-lettering may have made two.
            replayed.append(letter)
        # Handed back in one go, so they keep their order (see browse).
        if skipped:
            await skipped[-1].nack(multiple=True, requeue=True)
        return replayed
    finally:
        await channel.close()


async def purge(
    connection: AbstractConnection,
    conn: asyncpg.Connection,
    route: Route,
    operator: str,
) -> int:
    """Delete every message in the route's DLQ; the audit row says how many and who."""
    channel = await connection.channel()
    try:
        queue = await _passive(channel, route.dead_letter_queue.name)
        # The audit row is written first and committed only after the purge: a failed purge
        # leaves no row, and a purge is never left unrecorded by a failing insert.
        async with conn.transaction():
            purge_id = await conn.fetchval(
                "INSERT INTO dlq_purges (queue, operator) VALUES ($1, $2) RETURNING id",
                route.dead_letter_queue.name,
                operator,
            )
            result = await queue.purge()
            purged = int(result.message_count or 0)
            await conn.execute(
                "UPDATE dlq_purges SET messages = $1 WHERE id = $2", purged, purge_id
            )
        return purged
    finally:
        await channel.close()


# What an event may carry of the customer, and what erasure leaves in its place (the field
# stays, so the event still has its shape).
_PERSONAL_FIELDS = {"message": ERASED, "email": ERASED, "reason": ERASED, "phone": None}


def _masked_event(body: bytes, customer_id: str, incident_ids: frozenset[str]) -> bytes | None:
    """The event's JSON with the customer's data overwritten, or None when it is not theirs
    (or not an event at all: left as it is)."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    theirs = (
        event.get("customer_id") == customer_id or str(event.get("incident_id")) in incident_ids
    )
    if not theirs:
        return None
    for field, replacement in _PERSONAL_FIELDS.items():
        if field in event:
            event[field] = replacement
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _masked_body(
    message: AbstractIncomingMessage, customer_id: str, incident_ids: frozenset[str]
) -> bytes | None:
    """The message's body with the customer's events masked (one event, or a batch whose
    other events stay as they were); None when none of its events is theirs."""
    if not is_batch(message.headers):
        return _masked_event(message.body, customer_id, incident_ids)
    parts = decode_batch(message.body)
    masked = [_masked_event(part.body, customer_id, incident_ids) for part in parts]
    if not any(masked):
        return None
    return encode_parts(
        [
            Part(part.message_id, part.headers, body or part.body)
            for part, body in zip(parts, masked, strict=True)
        ]
    )


async def erase(connection: AbstractConnection, customer_id: str, incident_ids: list[str]) -> int:
    """Overwrite a customer's email, phone and words in every dead letter that holds them;
    the number of messages changed.

    Each such message is replaced by a masked copy (its headers, error and death history kept,
    so it can still be inspected, replayed or purged), confirmed by the broker before the
    original is acked: a crash in between leaves the original, never nothing. The others are
    handed back in one go, in their order (see browse).
    """
    wanted = frozenset(incident_ids)
    changed = 0
    for name in DEAD_LETTER_ROUTES:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        held: list[AbstractIncomingMessage] = []
        try:
            try:
                queue = await _passive(channel, name)
            except ChannelNotFoundEntity:
                continue  # never declared: nothing was dead-lettered there
            for _ in range(queue.declaration_result.message_count or 0):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                body = _masked_body(message, customer_id, wanted)
                if body is None:
                    held.append(message)
                    continue
                await _send_copy(channel, message, body, dict(message.headers or {}), name)
                await message.ack()
                changed += 1
            if held:
                await held[-1].nack(multiple=True, requeue=True)
        finally:
            if not channel.is_closed:
                await channel.close()
    return changed
