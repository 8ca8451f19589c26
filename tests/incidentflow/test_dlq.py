"""``incidentflow dlq`` against a real RabbitMQ (a vhost of its own) and a real Postgres."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from typer.testing import CliRunner, Result

from contracts.events import IncidentScored
from contracts.topology import CLASSIFIER_SCORED, EVENTS, SENTIMENT_RECEIVED, WORK_ROUTES
from incidentflow.messaging import declare_all, make_broker
from incidentflow_tools.cli import app
from incidentflow_tools.sandbox import own_vhost
from tests.conftest import RABBITMQ_URL
from tests.queues import take

SENTIMENT_DLQ = SENTIMENT_RECEIVED.dead_letter_queue.name
CLASSIFIER_DLQ = CLASSIFIER_SCORED.dead_letter_queue.name


@pytest.fixture(scope="module")
def broker_url(rabbitmq_url: str) -> Iterator[str]:
    """A fresh vhost with the whole topology: DLQ counts here are this module's alone."""
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base, "dlq") as url:
        asyncio.run(declare_all(url))
        yield url


def cli(broker_url: str, database_url: str, *args: str) -> Result:
    # USER stays: it is the operator's default, and libpq's default database user too.
    env = {"RABBITMQ_URL": broker_url, "DATABASE_URL": database_url}
    return CliRunner().invoke(app, ["dlq", *args], env=env)


async def _count(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    try:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


def count(url: str, queue: str) -> int:
    return asyncio.run(_count(url, queue))


def wait_for_count(url: str, queue: str, expected: int, timeout: float = 30) -> None:
    # A quorum queue dead-letters at least once through a worker of its own that waits for
    # the DLQ's confirm; on a loaded CI machine that has taken more than 10 s.
    deadline = time.monotonic() + timeout
    while count(url, queue) != expected:
        assert time.monotonic() < deadline, f"{queue}: {count(url, queue)} != {expected}"
        time.sleep(0.1)


async def _reject_from_work_queue(url: str, incident_id: uuid.UUID, message_id: str) -> None:
    """A message the broker itself dead-letters: published, taken, rejected without requeue."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS.name)
        body = json.dumps({"incident_id": str(incident_id), "message": "charged twice"})
        await exchange.publish(
            aio_pika.Message(
                body.encode(),
                message_id=message_id,
                type="incident.received",
                content_type="application/json",
                headers={"traceparent": "00-abc-def-01"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=SENTIMENT_RECEIVED.routing_key,
        )
        queue = await channel.get_queue(SENTIMENT_RECEIVED.queue_name)
        message = None
        while message is None:
            message = await queue.get(no_ack=False, fail=False)
        await message.reject(requeue=False)
    finally:
        await connection.close()


async def _poison_through_delivery_policy(url: str, incident_id: uuid.UUID) -> None:
    """An invalid incident.scored consumed by a real subscriber with DeliveryPolicy."""
    broker = make_broker(url, prefetch=1)
    seen: list[IncidentScored] = []

    @broker.subscriber(CLASSIFIER_SCORED.queue, CLASSIFIER_SCORED.source)
    async def on_scored(event: IncidentScored) -> None:
        seen.append(event)

    await broker.start()
    try:
        await broker.publish(
            # polarity missing, sentiment not one of the three; the email must not leak.
            {"incident_id": str(incident_id), "sentiment": "furious jane@example.com"},
            exchange=EVENTS,
            routing_key=CLASSIFIER_SCORED.routing_key,
            persist=True,
            message_id="poison-1",
        )
        deadline = time.monotonic() + 10
        while await _count(url, CLASSIFIER_DLQ) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await broker.stop()
    assert seen == []


async def _audit_rows(database_url: str, table: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        await conn.close()


def test_dead_letters_are_listed_shown_replayed_and_purged(
    broker_url: str, database_url: str
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    asyncio.run(_reject_from_work_queue(broker_url, first, "msg-1"))
    asyncio.run(_reject_from_work_queue(broker_url, second, "msg-2"))
    wait_for_count(broker_url, SENTIMENT_DLQ, 2)

    listed = cli(broker_url, database_url, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert f"{SENTIMENT_DLQ} 2" in lines
    assert f"{CLASSIFIER_DLQ} 0" in lines
    assert lines[-1] == "total 2"
    assert len(lines) == len(WORK_ROUTES) + 1

    # Shown twice: same messages, same order, nothing taken.
    shows = [cli(broker_url, database_url, "show", SENTIMENT_DLQ) for _ in range(2)]
    assert shows[0].exit_code == 0, shows[0].output
    assert shows[0].stdout == shows[1].stdout
    rows = shows[0].stdout.splitlines()
    assert rows[0].startswith("message_id=msg-1 event=incident.received ")
    assert f"incident_id={first}" in rows[0]
    assert f"queue={SENTIMENT_RECEIVED.queue_name} reason=rejected deaths=1" in rows[0]
    assert rows[1].startswith("message_id=msg-2 ") and rows[-1] == f"shown 2 of {SENTIMENT_DLQ}"
    assert count(broker_url, SENTIMENT_DLQ) == 2

    # The work queue's name stands for its DLQ.
    replayed = cli(
        broker_url, database_url, "replay", SENTIMENT_RECEIVED.queue_name, "--message-id", "msg-2"
    )
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.splitlines()[-1] == f"replayed 1 from {SENTIMENT_DLQ}"
    back = asyncio.run(take(broker_url, SENTIMENT_RECEIVED.queue_name))
    assert [m.message_id for m in back] == ["msg-2"]
    assert json.loads(back[0].body)["incident_id"] == str(second)
    headers = back[0].headers or {}
    assert "x-death" not in headers and headers["traceparent"] == "00-abc-def-01"
    assert headers["x-incidentflow-replayed-from"] == SENTIMENT_DLQ
    assert back[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert count(broker_url, SENTIMENT_DLQ) == 1  # msg-1 stays, msg-2 left

    audit = asyncio.run(_audit_rows(database_url, "dlq_replays"))
    assert [(r["queue"], r["message_id"], r["incident_id"], r["operator"]) for r in audit] == [
        (SENTIMENT_DLQ, "msg-2", str(second), getpass.getuser())
    ]
    assert audit[0]["original_queue"] == SENTIMENT_RECEIVED.queue_name

    missing = cli(broker_url, database_url, "replay", SENTIMENT_DLQ, "--message-id", "nope")
    assert missing.exit_code == 1 and "nope" in missing.stderr
    assert count(broker_url, SENTIMENT_DLQ) == 1

    refused = cli(broker_url, database_url, "purge", SENTIMENT_DLQ)
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert count(broker_url, SENTIMENT_DLQ) == 1

    purged = cli(broker_url, database_url, "purge", SENTIMENT_DLQ, "--yes", "--operator", "bob")
    assert purged.exit_code == 0, purged.output
    assert purged.stdout.strip() == f"purged 1 from {SENTIMENT_DLQ}"
    assert count(broker_url, SENTIMENT_DLQ) == 0
    purges = asyncio.run(_audit_rows(database_url, "dlq_purges"))
    assert [(r["queue"], r["messages"], r["operator"]) for r in purges] == [
        (SENTIMENT_DLQ, 1, "bob")
    ]


def test_a_poison_message_is_dead_lettered_with_its_error_and_replayed_all(
    broker_url: str, database_url: str
) -> None:
    incident_id = uuid.uuid4()
    asyncio.run(_poison_through_delivery_policy(broker_url, incident_id))
    assert count(broker_url, CLASSIFIER_DLQ) == 1
    assert count(broker_url, CLASSIFIER_SCORED.queue_name) == 0

    shown = cli(broker_url, database_url, "show", CLASSIFIER_DLQ, "--limit", "5")
    assert shown.exit_code == 0, shown.output
    line = shown.stdout.splitlines()[0]
    assert line.startswith(f"message_id=poison-1 event=- incident_id={incident_id} ")
    assert "reason=invalid-payload" in line and "deaths=-" in line
    error = json.loads(line.split(" error=", 1)[1])
    assert "polarity: Field required" in error and "sentiment: Input should be" in error
    assert "jane@example.com" not in shown.stdout

    replayed = cli(broker_url, database_url, "replay", CLASSIFIER_DLQ, "--all")
    assert replayed.exit_code == 0, replayed.output
    assert count(broker_url, CLASSIFIER_DLQ) == 0
    back = asyncio.run(take(broker_url, CLASSIFIER_SCORED.queue_name))
    assert [m.message_id for m in back] == ["poison-1"]
    # The error headers belong to the dead copy, not to the replayed message.
    assert "x-incidentflow-error" not in (back[0].headers or {})


@pytest.mark.parametrize(
    "args",
    [["show", "nope.dlq"], ["replay", "nope", "--all"], ["purge", "nope", "--yes"]],
    ids=["show", "replay", "purge"],
)
def test_an_unknown_queue_is_refused_naming_the_valid_ones(
    broker_url: str, database_url: str, args: list[str]
) -> None:
    result = cli(broker_url, database_url, *args)
    assert result.exit_code == 2
    assert "unknown dead-letter queue 'nope" in result.stderr
    assert all(route.dead_letter_queue.name in result.stderr for route in WORK_ROUTES)


def test_replay_needs_message_ids_or_all(broker_url: str, database_url: str) -> None:
    result = cli(broker_url, database_url, "replay", SENTIMENT_DLQ)
    assert result.exit_code == 2 and "--all" in result.stderr


def test_an_unreachable_broker_is_a_clear_error(database_url: str) -> None:
    result = cli("amqp://guest:guest@127.0.0.1:1/", database_url, "list")
    assert result.exit_code == 1 and result.stderr.startswith("error: broker:")
