"""The outbox relay survives what a broker does to it: cancelled confirms, refusals, outages."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from contracts.events import IncidentReceived
from incidentflow.batched_events import BATCH_HEADER, decode_batch
from incidentflow.messaging import make_broker, publish_parts
from incidentflow_tools.sandbox import free_port
from services.ingest import relay as relay_module
from services.ingest import store
from services.ingest.relay import OutboxRelay
from tests.services.incidents import stored_incident
from tests.services.ingest.conftest import (
    bind_received_queue,
    count,
    ingest_settings,
    serve,
)

BODY = {"customer_id": "bp-1", "channel": "email", "email": "a@b.co"}


async def accepted(pool: asyncpg.Pool, trace: dict[str, str] | None = None) -> IncidentReceived:
    return await stored_incident(pool, "charged twice", trace)


async def published(pool: asyncpg.Pool, event: IncidentReceived, timeout: float = 10) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        # Published rows leave the outbox (personal data kept no longer than needed).
        left = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = $1", event.event_id
        )
        if left == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_what_is_pending_goes_in_one_message_each_event_with_its_trace(
    vhost_url: str, pool: asyncpg.Pool
) -> None:
    await bind_received_queue(vhost_url, "batch.received")
    # Events earlier tests left unpublished would join the batch.
    await pool.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    traces = [{"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"} for _ in "abcde"]
    events = [await accepted(pool, trace=trace) for trace in traces]
    broker = make_broker(vhost_url, prefetch=1)
    await broker.connect()
    try:
        relay = OutboxRelay(pool, broker, interval=0.1, batch_size=50)
        assert await relay.publish_pending() == 5
        assert await relay.publish_pending() == 0  # marked published
    finally:
        await broker.stop()
    connection = await aio_pika.connect(vhost_url)
    async with connection:
        queue = await (await connection.channel()).declare_queue("batch.received", passive=True)
        message = await queue.get(timeout=5)
        assert await queue.get(fail=False) is None  # one message for the five
    assert message.headers[BATCH_HEADER] == 5
    parts = decode_batch(message.body)
    assert [IncidentReceived.model_validate_json(p.body) for p in parts] == events
    assert [p.headers for p in parts] == traces
    assert [p.message_id for p in parts] == [str(e.event_id) for e in events]


async def test_what_arrives_while_the_relay_lingers_goes_in_the_same_message(
    vhost_url: str, pool: asyncpg.Pool
) -> None:
    await bind_received_queue(vhost_url, "linger.received")
    await pool.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    broker = make_broker(vhost_url, prefetch=1)
    await broker.connect()
    # A poll interval far off: only the wakes below start a round.
    relay = OutboxRelay(pool, broker, interval=30, batch_size=50, linger=0.5)
    relay.start()
    try:
        await asyncio.sleep(0.2)  # its first round, with nothing pending, is over
        first = await accepted(pool)
        relay.wake()
        await asyncio.sleep(0.1)
        later = [await accepted(pool) for _ in range(3)]
        relay.wake()
        assert await published(pool, first) and await published(pool, later[-1])
    finally:
        await relay.stop()
        await broker.stop()
    connection = await aio_pika.connect(vhost_url)
    async with connection:
        queue = await (await connection.channel()).declare_queue("linger.received", passive=True)
        message = await queue.get(timeout=5)
        assert await queue.get(fail=False) is None  # without the linger, the first went alone
    parts = decode_batch(message.body)
    assert [IncidentReceived.model_validate_json(p.body) for p in parts] == [first, *later]


async def test_a_cancelled_confirm_does_not_kill_the_relay(
    vhost_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bind_received_queue(vhost_url, "test.received")
    broker = make_broker(vhost_url, prefetch=1)
    await broker.connect()
    real_publish = publish_parts
    calls = 0

    async def publish_cancelled_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            # What aiormq does to a pending confirm when the connection drops.
            raise asyncio.CancelledError
        return await real_publish(*args, **kwargs)

    monkeypatch.setattr(relay_module, "publish_parts", publish_cancelled_once)
    relay = OutboxRelay(pool, broker, interval=0.1, batch_size=50)
    event = await accepted(pool)
    relay.start()
    try:
        assert await published(pool, event)
        assert calls >= 2 and relay.running
        later = await accepted(pool)
        relay.wake()
        assert await published(pool, later)
    finally:
        await relay.stop()
        await broker.stop()
    assert not relay.running  # its own cancellation still stops it


async def test_a_publish_that_never_returns_does_not_hold_the_outbox(
    vhost_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chaos run's broker restart left one publish waiting forever on a dead connection
    (aiormq's write, before any confirm, has no timeout), and the outbox behind it."""
    await bind_received_queue(vhost_url, "test.received")
    broker = make_broker(vhost_url, prefetch=1)
    await broker.connect()
    real_publish = publish_parts
    calls = 0

    async def hang_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # never set: the write that never completes
        return await real_publish(*args, **kwargs)

    monkeypatch.setattr(relay_module, "publish_parts", hang_once)
    relay = OutboxRelay(pool, broker, interval=0.1, batch_size=50, publish_timeout=0.5)
    event = await accepted(pool)
    relay.start()
    try:
        assert await published(pool, event, timeout=5)
        assert calls >= 2 and relay.running
    finally:
        await relay.stop()
        await broker.stop()


async def test_a_cancelled_database_call_does_not_kill_the_relay(
    vhost_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bind_received_queue(vhost_url, "test.received")
    broker = make_broker(vhost_url, prefetch=1)
    await broker.connect()
    real_pending = store.pending_outbox
    calls = 0

    async def pending_cancelled_once(conn: asyncpg.Connection, limit: int) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError
        return await real_pending(conn, limit)

    monkeypatch.setattr(store, "pending_outbox", pending_cancelled_once)
    relay = OutboxRelay(pool, broker, interval=0.1, batch_size=50)
    event = await accepted(pool)
    relay.start()
    try:
        assert await published(pool, event)
        assert relay.running
    finally:
        await relay.stop()
        await broker.stop()


async def queue_length(url: str, name: str, *, purge: bool = False) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        if purge:
            await queue.purge()
        return int(queue.declaration_result.message_count or 0)


async def test_refused_by_a_full_queue_is_503_and_stores_nothing(
    vhost_url: str, database_url: str
) -> None:
    await bind_received_queue(
        vhost_url, "tiny.received", **{"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    # Events earlier tests left unpublished would fill the tiny queue before our first two.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    finally:
        await conn.close()
    settings = ingest_settings(vhost_url, database_url)
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        first = await client.post("/api/incidents", json={**BODY, "message": "first"})
        assert first.status_code == 202, first.text
        second = await client.post("/api/incidents", json={**BODY, "message": "second"})
        assert second.status_code == 202  # stored: the broker has not refused anything yet
        refused = None
        for attempt in range(100):
            response = await client.post(
                "/api/incidents",
                json={**BODY, "customer_id": f"bp-{attempt}", "message": "probe"},
            )
            assert response.status_code in (202, 503), response.text
            if response.status_code == 503:
                refused = response
                break
            await asyncio.sleep(0.1)
        assert refused is not None, "the broker's nack never reached the API"
        assert int(refused.headers["Retry-After"]) > 0
        assert "nothing was stored" in refused.json()["detail"]
        before = await count(database_url, "SELECT count(*) FROM incidents")
        again = await client.post("/api/incidents", json={**BODY, "message": "while full"})
        assert again.status_code == 503
        assert await count(database_url, "SELECT count(*) FROM incidents") == before
        # Every stored incident is still pending in the outbox, none silently dropped.
        assert (
            await count(
                database_url,
                "SELECT count(*) FROM outbox o"
                " JOIN incidents i ON i.id = (o.payload->>'incident_id')::uuid"
                " WHERE i.customer_id LIKE $1 AND o.published_at IS NULL",
                "bp-%",
            )
            >= 1
        )
        assert await queue_length(vhost_url, "tiny.received") == 1

        # A consumer drains the queue: the relay's backlog goes out, one event per free slot,
        # and once the broker refuses nothing ingest accepts again.
        for _ in range(100):
            await queue_length(vhost_url, "tiny.received", purge=True)
            response = await client.post(
                "/api/incidents", json={**BODY, "customer_id": "bp-after", "message": "purged"}
            )
            if response.status_code == 202:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 202


async def test_broker_unreachable_still_accepts(database_url: str) -> None:
    settings = ingest_settings(f"amqp://guest:guest@127.0.0.1:{free_port()}/", database_url)
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/api/incidents", json={**BODY, "customer_id": "down-1", "message": "broker away"}
        )
        assert response.status_code == 202
        incident_id = response.json()["incident_id"]
        await asyncio.sleep(0.5)  # a relay round or two against the closed port
        again = await client.post(
            "/api/incidents", json={**BODY, "customer_id": "down-1", "message": "still away"}
        )
        assert again.status_code == 202
        stats = await client.get("/api/stats")
        assert stats.status_code == 200 and stats.json()["dead_letters"] is None
    assert (
        await count(
            database_url,
            "SELECT count(*) FROM outbox"
            " WHERE payload->>'incident_id' = $1 AND published_at IS NULL",
            incident_id,
        )
        == 1
    )
