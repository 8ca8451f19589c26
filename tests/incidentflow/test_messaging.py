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
from faststream.rabbit.annotations import RabbitMessage

from contracts.events import Event
from contracts.topology import DELIVERY_LIMIT, EVENTS, Route
from incidentflow.messaging import (
    RETRIES_HEADER,
    declare_delay_levels,
    declare_routes,
    earlier_attempts,
    is_last_delivery,
    make_broker,
    publish_delayed,
    publish_event,
    retry_backoff,
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


class BatchProbe(ProbeEvent):
    name = "test.batch-probe"


class UnheardProbe(ProbeEvent):
    name = "test.unheard-probe"  # no queue is ever bound for it


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


async def test_a_retry_waits_in_the_delay_queues_and_comes_back_to_this_queue_only(
    broker: RabbitBroker, rabbitmq_url: str
) -> None:
    """The failed message is acked and a copy waits in the broker (the consumer holds
    nothing meanwhile); it returns to the failing consumer's queue, not to every queue bound
    for its event, carrying its retry count."""
    failing = Route(f"probe{uuid.uuid4().hex[:6]}", ProbeEvent)
    bystander = Route(f"probe{uuid.uuid4().hex[:6]}", ProbeEvent)
    await declare_routes(broker, (failing, bystander))
    tries: list[tuple[float, int]] = []
    seen_by_bystander: list[str] = []

    @broker.subscriber(failing.queue, failing.source)
    async def on_probe(event: ProbeEvent, message: RabbitMessage) -> None:
        tries.append((time.monotonic(), int((message.headers or {}).get(RETRIES_HEADER, 0))))
        if len(tries) == 1:
            raise ConnectionError("ticket system restarting")

    @broker.subscriber(bystander.queue, bystander.source)
    async def on_bystander(event: ProbeEvent) -> None:
        seen_by_bystander.append(event.note)

    await broker.start()
    await publish_event(broker, ProbeEvent(incident_id=uuid.uuid4(), note="retry me"))
    await until(lambda: len(tries) == 1)
    await asyncio.sleep(0.5)
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        work = await channel.declare_queue(failing.queue_name, passive=True)
        assert work.declaration_result.message_count == 0  # not held by the consumer either
    finally:
        await connection.close()
    await until(lambda: len(tries) == 2)
    assert [retries for _, retries in tries] == [0, 1]
    assert tries[1][0] - tries[0][0] >= retry_backoff(0)  # 1 s
    await asyncio.sleep(1)
    assert seen_by_bystander == ["retry me"]  # once: the retry was not fanned out again
    assert await drain(rabbitmq_url, failing.dead_letter_queue.name, timeout=1) == []


async def test_a_message_failing_past_the_limit_is_dead_lettered_with_the_error(
    broker: RabbitBroker, rabbitmq_url: str
) -> None:
    route = Route(f"probe{uuid.uuid4().hex[:6]}", ProbeEvent)
    await declare_routes(broker, (route,))
    tries: list[str] = []

    @broker.subscriber(route.queue, route.source)
    async def on_probe(event: ProbeEvent) -> None:
        tries.append(event.note)
        raise ConnectionError("still down")

    await broker.start()
    # The last allowed try: it has been retried DELIVERY_LIMIT times already.
    await broker.publish(
        ProbeEvent(incident_id=uuid.uuid4(), note="give up").model_dump(mode="json"),
        exchange=EVENTS,
        routing_key=route.routing_key,
        persist=True,
        headers={RETRIES_HEADER: DELIVERY_LIMIT},
    )
    dead = await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=3)
    assert tries == ["give up"]
    assert len(dead) == 1
    headers = dead[0].headers
    assert headers["x-incidentflow-reason"] == "retries-exhausted"
    assert headers["x-incidentflow-queue"] == route.queue_name
    assert "ConnectionError: still down" in str(headers["x-incidentflow-error"])


def test_earlier_attempts_count_retries_and_redeliveries() -> None:
    assert earlier_attempts(None) == 0
    assert earlier_attempts({RETRIES_HEADER: 2, "x-delivery-count": 1}) == 3
    assert not is_last_delivery({RETRIES_HEADER: DELIVERY_LIMIT - 1})
    assert is_last_delivery({RETRIES_HEADER: DELIVERY_LIMIT - 1, "x-delivery-count": 1})
    assert [retry_backoff(a) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
