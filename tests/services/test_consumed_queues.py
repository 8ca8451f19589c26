"""Every queue a service consumes has its retry binding and its dead-letter queue, on the real
broker: the routes are derived from the subscribers, so none can be forgotten (a failing
message on a queue without them would be dropped instead of retried or parked)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import ChannelClosed
from faststream.rabbit.subscriber import RabbitSubscriber

from contracts.topology import WORK_ROUTES, DelayLevels, dead_letter_queue_name, retry_routing_key
from incidentflow.service import ServiceRuntime
from incidentflow.settings import CommonSettings
from incidentflow_tools.sandbox import own_vhost
from services.classifier.app import build_runtime as classifier_runtime
from services.classifier.settings import ClassifierSettings
from services.notifier.app import build_runtime as notifier_runtime
from services.notifier.settings import NotifierSettings
from services.reminder.app import build_runtime as reminder_runtime
from services.reminder.settings import ReminderSettings
from services.sentiment.app import build_runtime as sentiment_runtime
from services.sentiment.settings import SentimentSettings
from services.ticketing.app import build_runtime as ticketing_runtime
from services.ticketing.settings import TicketingSettings

SERVICES: dict[str, tuple[Callable[[Any], ServiceRuntime], type[CommonSettings]]] = {
    "sentiment": (sentiment_runtime, SentimentSettings),
    "classifier": (classifier_runtime, ClassifierSettings),
    "ticketing": (ticketing_runtime, TicketingSettings),
    "notifier": (notifier_runtime, NotifierSettings),
    "reminder": (reminder_runtime, ReminderSettings),
}


@pytest.fixture
def vhost_url(rabbitmq_url: str) -> Iterator[str]:
    with own_vhost(rabbitmq_url, "consumed") as url:
        yield url


def consumed_queues(runtime: ServiceRuntime) -> set[str]:
    return {
        subscriber.queue.name
        for subscriber in runtime.broker.subscribers
        if isinstance(subscriber, RabbitSubscriber)
    }


async def retry_reaches(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> bool:
    """A message sent the way a retry leaves the delay levels arrives in ``queue_name``."""
    probe = uuid.uuid4().hex.encode()
    delivery = await channel.get_exchange(DelayLevels.DELIVERY.name, ensure=True)
    routing_key = DelayLevels.routing_key(0, retry_routing_key(queue_name))
    await delivery.publish(aio_pika.Message(probe), routing_key=routing_key, mandatory=True)
    queue = await channel.get_queue(queue_name, ensure=True)
    message = await queue.get(timeout=5, fail=False)
    if message is None:
        return False
    await message.ack()
    return message.body == probe


async def queue_exists(connection: aio_pika.abc.AbstractConnection, name: str) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, passive=True)
    except ChannelClosed:
        return False
    await channel.close()
    return True


@pytest.mark.parametrize("service", SERVICES)
async def test_every_consumed_queue_has_its_retry_binding_and_dead_letter_queue(
    service: str, vhost_url: str, database_url: str
) -> None:
    build, settings_class = SERVICES[service]
    runtime = build(settings_class(RABBITMQ_URL=vhost_url, DATABASE_URL=database_url))
    consumed = consumed_queues(runtime)
    assert consumed, f"{service} consumes nothing"
    # The runtime knows a route for every subscriber, and only those.
    assert {route.queue_name for route in runtime.routes} == consumed
    try:
        async with runtime.lifespan():
            connection = await aio_pika.connect(vhost_url)
            try:
                channel = await connection.channel(publisher_confirms=True)
                for queue_name in sorted(consumed):
                    assert await queue_exists(connection, dead_letter_queue_name(queue_name)), (
                        f"{queue_name} has no dead-letter queue"
                    )
                    assert await retry_reaches(channel, queue_name), (
                        f"{queue_name}'s retries do not come back to it"
                    )
            finally:
                await connection.close()
    finally:
        # The lifespan connects the broker and the ASGI app stops it: here nothing would, and
        # its robust connection would keep reconnecting to the vhost deleted after the test,
        # holding the session's event loop open at the end of the run.
        await runtime.broker.stop()


def test_the_services_consume_every_work_route() -> None:
    """Each work route of the topology belongs to one of the services above."""
    consumed: set[str] = set()
    for build, settings_class in SERVICES.values():
        consumed |= consumed_queues(build(settings_class()))
    assert consumed == {route.queue_name for route in WORK_ROUTES}


async def test_a_subscriber_made_past_the_runtime_stops_the_start(
    vhost_url: str, database_url: str
) -> None:
    runtime = ServiceRuntime(
        "stray", CommonSettings(RABBITMQ_URL=vhost_url, DATABASE_URL=database_url)
    )

    @runtime.broker.subscriber("stray.queue")
    async def handle(body: str) -> None:
        return None

    try:
        with pytest.raises(RuntimeError, match=r"stray\.queue"):
            async with runtime.lifespan():
                pass
    finally:
        await runtime.broker.stop()
