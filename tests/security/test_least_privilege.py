"""Each service logs in with only its own grants (contracts/grants.py): what one compromised
service could do with its credentials, tried on the real servers and refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused

from contracts.events import IncidentScored, IncidentTicketed
from contracts.grants import SERVICES
from contracts.topology import DEAD_LETTERS, EVENTS, NOTIFIER_TICKETED, SENTIMENT_RECEIVED
from incidentflow_tools.sandbox import broker_management_url
from tests.security.conftest import Servers

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def logins(servers: Servers) -> Path:
    return servers.logins


def url(logins: Path, service: str, setting: str) -> str:
    return (logins / service / setting).read_text().strip()


async def refused(database_url: str, statement: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        return True
    finally:
        await conn.close()
    return False


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE audit_events",
        "DELETE FROM audit_events",
        "UPDATE audit_events SET outcome = 'rewritten'",
    ],
)
async def test_no_service_can_rewrite_the_audit_trail(
    logins: Path, service: str, statement: str
) -> None:
    assert await refused(url(logins, service, "database_url"), statement)


async def test_every_service_can_append_to_the_audit_trail(logins: Path) -> None:
    """The control for the refusals above: the audit table is there and each can add to it."""
    for service in SERVICES:
        conn = await asyncpg.connect(url(logins, service, "database_url"))
        try:
            await conn.execute(
                "INSERT INTO audit_events (service, event_name, event_id, incident_id,"
                " occurred_at, payload, outcome)"
                " VALUES ($1, 'check', gen_random_uuid(), gen_random_uuid(), now(), '{}', 'ok')",
                service,
            )
        finally:
            await conn.close()


async def test_a_step_writes_its_own_columns_and_no_others(logins: Path) -> None:
    sentiment = url(logins, "sentiment", "database_url")
    assert not await refused(sentiment, "UPDATE incidents SET polarity = 0 WHERE false")
    assert await refused(sentiment, "UPDATE incidents SET ticket_id = 'forged' WHERE false")
    assert await refused(sentiment, "UPDATE incidents SET status = 'resolved' WHERE false")
    assert await refused(sentiment, "DELETE FROM incidents")
    assert await refused(sentiment, "SELECT * FROM notifications")
    assert await refused(url(logins, "notifier", "database_url"), "DROP TABLE outbox")


async def publish(broker_url: str, routing_key: str) -> None:
    """One persistent message on incidentflow.events, confirmed by the broker."""
    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS.name, ensure=False)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=routing_key)
    finally:
        await connection.close()


async def test_sentiment_publishes_its_scores_but_cannot_forge_a_ticketed_event(
    logins: Path,
) -> None:
    sentiment = url(logins, "sentiment", "rabbitmq_url")
    await publish(sentiment, IncidentScored.routing_key())
    with pytest.raises(ChannelAccessRefused):
        await publish(sentiment, IncidentTicketed.routing_key())


async def test_sentiment_cannot_slip_a_message_into_the_notifiers_queue_as_a_retry(
    logins: Path,
) -> None:
    """Retries go through the delay levels with the failing queue in the routing key: a
    service may send only its own queues' retries that way."""
    from contracts.topology import DelayLevels, retry_routing_key

    connection = await aio_pika.connect(url(logins, "sentiment", "rabbitmq_url"))
    try:
        channel = await connection.channel(publisher_confirms=True)
        level = await channel.get_exchange(DelayLevels.exchange(0).name, ensure=False)
        own = DelayLevels.routing_key(1, retry_routing_key(SENTIMENT_RECEIVED.queue_name))
        await level.publish(aio_pika.Message(b"{}"), routing_key=own)
        other = DelayLevels.routing_key(1, retry_routing_key(NOTIFIER_TICKETED.queue_name))
        with pytest.raises(ChannelAccessRefused):
            await level.publish(aio_pika.Message(b"{}"), routing_key=other)
    finally:
        await connection.close()


async def leave_it(message: AbstractIncomingMessage) -> None:
    await message.nack(requeue=True)


@pytest.mark.parametrize(
    "retry_of",
    [
        # another service's queue, its own as a prefix, and an event: all land elsewhere
        NOTIFIER_TICKETED.queue_name,
        f"{SENTIMENT_RECEIVED.queue_name}.retry.{NOTIFIER_TICKETED.queue_name}",
        f"{SENTIMENT_RECEIVED.queue_name}.x",
    ],
)
async def test_a_retry_key_names_exactly_one_of_its_own_queues(logins: Path, retry_of: str) -> None:
    """The delay exit routes by the key's end (``#.retry.<queue>``, ``#.reminder.due.v1``):
    a key with another queue's name after a service's own would reach that other queue."""
    from contracts.topology import DelayLevels, retry_routing_key

    async with await aio_pika.connect(url(logins, "sentiment", "rabbitmq_url")) as connection:
        channel = await connection.channel(publisher_confirms=True)
        level = await channel.get_exchange(DelayLevels.exchange(0).name, ensure=False)
        with pytest.raises(ChannelAccessRefused):
            await level.publish(
                aio_pika.Message(b"{}"),
                routing_key=DelayLevels.routing_key(1, retry_routing_key(retry_of)),
            )


async def test_no_service_publishes_to_the_delay_exit_directly(logins: Path) -> None:
    from contracts.topology import DelayLevels, retry_routing_key

    async with await aio_pika.connect(url(logins, "sentiment", "rabbitmq_url")) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exit_ = await channel.get_exchange(DelayLevels.DELIVERY.name, ensure=False)
        with pytest.raises(ChannelAccessRefused):
            await exit_.publish(
                aio_pika.Message(b"{}"),
                routing_key=retry_routing_key(SENTIMENT_RECEIVED.queue_name),
            )


@pytest.mark.parametrize("action", ["get", "purge", "delete"])
async def test_no_service_reads_purges_or_deletes_the_shared_delay_queues(
    logins: Path, action: str
) -> None:
    """They hold every service's retries (whole events) and the pending follow-ups."""
    from contracts.topology import DelayLevels

    async with await aio_pika.connect(url(logins, "notifier", "rabbitmq_url")) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue(DelayLevels.queue(3).name, ensure=False)
        with pytest.raises(ChannelAccessRefused):
            if action == "get":
                await queue.get(fail=False)
            elif action == "purge":
                await queue.purge()
            else:
                await queue.delete(if_unused=False, if_empty=False)


async def test_no_service_binds_its_queue_to_anothers_dead_letters(logins: Path) -> None:
    async with await aio_pika.connect(url(logins, "sentiment", "rabbitmq_url")) as connection:
        channel = await connection.channel()
        spy = await channel.declare_queue("sentiment.spy", durable=False, auto_delete=True)
        with pytest.raises(ChannelAccessRefused):
            await spy.bind(DEAD_LETTERS.name, routing_key=NOTIFIER_TICKETED.queue_name)


async def test_no_service_binds_its_queue_to_every_event(logins: Path) -> None:
    async with await aio_pika.connect(url(logins, "sentiment", "rabbitmq_url")) as connection:
        channel = await connection.channel()
        spy = await channel.declare_queue("sentiment.spy", durable=False, auto_delete=True)
        with pytest.raises(ChannelAccessRefused):
            await spy.bind(EVENTS.name, routing_key="#")


async def consume_one(broker_url: str, queue_name: str) -> None:
    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        await queue.consume(leave_it)
    finally:
        await connection.close()


async def test_ingest_cannot_read_the_notifiers_queues(logins: Path) -> None:
    await consume_one(url(logins, "notifier", "rabbitmq_url"), NOTIFIER_TICKETED.queue_name)
    for queue in (NOTIFIER_TICKETED.queue_name, NOTIFIER_TICKETED.dead_letter_queue.name):
        with pytest.raises(ChannelAccessRefused):
            await consume_one(url(logins, "ingest", "rabbitmq_url"), queue)


def test_provision_roles_again_keeps_every_login(servers: Servers) -> None:
    """The command operators run after each migration: the same logins, still working and
    still refused what they were refused."""
    before = {s: url(servers.logins, s, "database_url") for s in SERVICES}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "incidentflow_tools.cli",
            "provision-roles",
            "--credentials",
            str(servers.logins),
        ],
        env={
            "DATABASE_URL": servers.database_url,
            "RABBITMQ_URL": servers.rabbitmq_url,
            "RABBITMQ_MANAGEMENT_URL": broker_management_url(servers.rabbitmq_url),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"roles={len(SERVICES)} users={len(SERVICES)}"
    assert {s: url(servers.logins, s, "database_url") for s in SERVICES} == before
    assert not asyncio.run(refused(before["notifier"], "SELECT count(*) FROM notifications"))
    assert asyncio.run(refused(before["notifier"], "TRUNCATE audit_events"))
