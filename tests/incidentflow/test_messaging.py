"""Delivery guarantees against a real RabbitMQ: delays, dead letters, retries."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker

from contracts.events import Event
from contracts.topology import EVENTS, Route
from incidentflow.messaging import (
    declare_delay_levels,
    declare_routes,
    make_broker,
    publish_delayed,
    publish_event,
)


class ProbeEvent(Event):
    name = "test.probe"
    note: str


class DelayedProbe(ProbeEvent):
    name = "test.delayed-probe"


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    broker = make_broker(rabbitmq_url, prefetch=10)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Poll ``condition`` until it holds or ``seconds`` pass (the assertion after says which)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def drain(rabbitmq_url: str, queue: str, timeout: float) -> list[AbstractIncomingMessage]:
    """Everything that arrives on ``queue`` within ``timeout`` seconds."""
    connection = await aio_pika.connect(rabbitmq_url)
    received: list[AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await q.get(fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            received.append(message)
    finally:
        await connection.close()
    return received


async def test_delayed_message_arrives_after_its_delay_not_before(
    broker: RabbitBroker, rabbitmq_url: str
) -> None:
    await declare_delay_levels(broker)
    # Its own event name: real reminder.due traffic on this broker must not reach the probe.
    route = Route(f"probe{uuid.uuid4().hex[:6]}", DelayedProbe, delayed=True)
    arrived: list[float] = []

    @broker.subscriber(route.queue, route.source)
    async def on_due(event: DelayedProbe) -> None:
        arrived.append(time.monotonic())

    await broker.start()
    event = DelayedProbe(incident_id=uuid.uuid4(), note="wake up")
    sent = time.monotonic()
    await publish_delayed(broker, event, 5)  # binary 101: levels 2 and 0
    await asyncio.sleep(4.5)
    assert arrived == []
    await asyncio.sleep(2.5)
    assert len(arrived) == 1
    assert 5 <= arrived[0] - sent < 7


async def test_invalid_payload_goes_straight_to_the_dead_letter_queue(
    broker: RabbitBroker, rabbitmq_url: str
) -> None:
    route = Route(f"probe{uuid.uuid4().hex[:6]}", ProbeEvent)
    await declare_routes(broker, (route,))
    calls: list[ProbeEvent] = []

    @broker.subscriber(route.queue, route.source)
    async def on_probe(event: ProbeEvent) -> None:
        calls.append(event)

    await broker.start()
    await broker.publish(
        {"not": "a probe"}, exchange=EVENTS, routing_key=route.routing_key, persist=True
    )
    dead = await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=3)
    assert len(dead) == 1 and calls == []
    # DeliveryPolicy's own copy, carrying why (a broker reject could not); original acked.
    headers = dead[0].headers
    assert headers["x-incidentflow-reason"] == "invalid-payload"
    assert headers["x-incidentflow-queue"] == route.queue_name
    assert "incident_id: Field required" in str(headers["x-incidentflow-error"])
    # Stopped, the consumer hands back anything it did not ack: the work queue stays empty.
    await broker.stop()
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        work = await (await connection.channel()).declare_queue(route.queue_name, passive=True)
        assert work.declaration_result.message_count == 0
    finally:
        await connection.close()


async def test_a_failing_handler_is_retried_and_then_succeeds(
    broker: RabbitBroker, rabbitmq_url: str
) -> None:
    route = Route(f"probe{uuid.uuid4().hex[:6]}", ProbeEvent)
    await declare_routes(broker, (route,))
    attempts: list[str] = []

    @broker.subscriber(route.queue, route.source)
    async def on_probe(event: ProbeEvent) -> None:
        attempts.append(event.note)
        if len(attempts) == 1:
            raise ConnectionError("database restarting")

    await broker.start()
    await publish_event(broker, ProbeEvent(incident_id=uuid.uuid4(), note="hello"))
    await until(lambda: len(attempts) >= 2)
    assert attempts == ["hello", "hello"]
    assert await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=1) == []


async def test_unroutable_publish_raises_instead_of_vanishing(broker: RabbitBroker) -> None:
    event = ProbeEvent(incident_id=uuid.uuid4(), note="nobody listens")
    with pytest.raises(Exception):  # noqa: B017 - aio-pika's DeliveryError on basic.return
        await publish_event(broker, event, routing_key=f"nobody.{uuid.uuid4().hex}")


class Unbuildable(Event):
    name = "test.unbuildable"
    required: str


async def test_an_event_our_own_code_cannot_build_is_retried_not_dead_lettered(
    broker: RabbitBroker, rabbitmq_url: str
) -> None:
    route = Route(f"probe{uuid.uuid4().hex[:6]}", ProbeEvent)
    await declare_routes(broker, (route,))
    attempts: list[str] = []

    @broker.subscriber(route.queue, route.source)
    async def on_probe(event: ProbeEvent) -> None:
        attempts.append(event.note)
        if len(attempts) == 1:
            Unbuildable.model_validate({"incident_id": event.incident_id})  # a bug, once

    await broker.start()
    await publish_event(broker, ProbeEvent(incident_id=uuid.uuid4(), note="again"))
    await until(lambda: len(attempts) >= 2)
    assert attempts == ["again", "again"]
    assert await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=1) == []
