"""Dead letters hold whole events, addresses and messages included: `provision-roles` puts a
time and a length limit on every dead-letter queue (DEAD_LETTER_TTL_DAYS,
DEAD_LETTER_MAX_LENGTH), and a full one refuses more rather than dropping any."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import DeliveryError

from contracts.topology import DEAD_LETTERS, NOTIFIER_TICKETED, SENTIMENT_RECEIVED
from incidentflow.provisioning import BrokerAdmin, DeadLetterLimits, vhost_of
from incidentflow_tools.sandbox import broker_management_url
from tests.security.conftest import Servers

DEFAULT = {"message-ttl": 30 * 86_400_000, "max-length": 100_000}


@pytest.fixture
def admin(servers: Servers) -> Iterator[BrokerAdmin]:
    url = servers.rabbitmq_url
    with BrokerAdmin(broker_management_url(url), vhost_of(url)) as admin:
        yield admin


def effective_policy(admin: BrokerAdmin, queue: str, expected: dict[str, int]) -> dict[str, Any]:
    """The queue's policy as the broker reports it, once it reports ``expected`` (the
    management statistics refresh every few seconds), or after 30 s whatever it is then."""
    deadline = time.monotonic() + 30
    while True:
        effective = admin.queue(queue).get("effective_policy_definition") or {}
        if effective == expected or time.monotonic() > deadline:
            return effective
        time.sleep(0.5)


def test_every_dead_letter_queue_has_the_default_limits(admin: BrokerAdmin) -> None:
    for route in (SENTIMENT_RECEIVED, NOTIFIER_TICKETED):
        assert effective_policy(admin, route.dead_letter_queue.name, DEFAULT) == DEFAULT
        # Work queues keep their own arguments: no expiry there.
        assert not admin.queue(route.queue_name).get("effective_policy_definition")


async def test_a_full_dead_letter_queue_refuses_more_and_keeps_what_it_has(
    servers: Servers, admin: BrokerAdmin
) -> None:
    dead_letter_queue = SENTIMENT_RECEIVED.dead_letter_queue.name
    small = {"message-ttl": 86_400_000, "max-length": 2}
    admin.limit_dead_letters(DeadLetterLimits(ttl_days=1, max_length=2))
    try:
        assert effective_policy(admin, dead_letter_queue, small) == small
        async with await aio_pika.connect(servers.rabbitmq_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            dlx = await channel.get_exchange(DEAD_LETTERS.name, ensure=False)
            accepted: list[bytes] = []
            for n in range(5):
                try:
                    await dlx.publish(
                        aio_pika.Message(str(n).encode()), routing_key=SENTIMENT_RECEIVED.queue_name
                    )
                except DeliveryError:
                    continue
                accepted.append(str(n).encode())
            # A quorum queue takes one past its limit (it checks before adding), then refuses.
            assert accepted == [b"0", b"1", b"2"]
            queue = await channel.get_queue(dead_letter_queue, ensure=False)
            kept = [await queue.get(no_ack=True, fail=True) for _ in accepted]
            assert [message.body for message in kept] == accepted
    finally:
        admin.limit_dead_letters(DeadLetterLimits())
