"""``incidentflow topology`` declares what it prints: checked against a real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aio_pika
import pytest
from typer.testing import CliRunner

from contracts.topology import WORK_ROUTES, DelayLevels, retry_routing_key
from incidentflow_tools.cli import app
from incidentflow_tools.sandbox import own_vhost
from tests.conftest import RABBITMQ_URL


@pytest.fixture
def vhost_url(rabbitmq_url: str) -> Iterator[str]:
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base, "topology") as url:
        yield url


async def _retry_reaches_its_queue_alone(url: str, queue: str) -> dict[str, int]:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        delivery = await channel.get_exchange(DelayLevels.DELIVERY.name)
        await delivery.publish(
            aio_pika.Message(b"{}"), routing_key=f"2.1.{retry_routing_key(queue)}"
        )
        await asyncio.sleep(0.3)
        counts = {}
        for route in WORK_ROUTES:
            declared = await channel.declare_queue(route.queue_name, passive=True)
            counts[route.queue_name] = declared.declaration_result.message_count or 0
        return counts
    finally:
        await connection.close()


def test_topology_prints_and_declares_each_queue_s_retry_binding(vhost_url: str) -> None:
    result = CliRunner().invoke(app, ["topology"], env={"RABBITMQ_URL": vhost_url})
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    for route in WORK_ROUTES:
        assert [route.retry_binding_key, "->", route.queue_name] in lines
    target = WORK_ROUTES[0].queue_name
    counts = asyncio.run(_retry_reaches_its_queue_alone(vhost_url, target))
    assert counts == {route.queue_name: int(route.queue_name == target) for route in WORK_ROUTES}
