"""Ingest as a real uvicorn server on loopback, against the test broker and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import uvicorn
from faststream.rabbit import RabbitQueue

from contracts.events import IncidentReceived
from contracts.topology import EVENTS
from incidentflow.messaging import make_broker
from incidentflow_tools.sandbox import free_port, own_database, own_vhost
from services.ingest.app import create_app
from services.ingest.keys import ApiKey, hash_key
from services.ingest.settings import IngestSettings
from tests.conftest import RABBITMQ_URL

SUBMIT_KEY = "submit-key-0123456789abcdefghijklmnopqrstuvwxyz"
OPERATE_KEY = "operate-key-0123456789abcdefghijklmnopqrstuvwxyz"
BOTH_KEY = "both-key-0123456789abcdefghijklmnopqrstuvwxyz"
KEYS = [
    ApiKey(name="frontend", scopes=frozenset({"submit"}), digest=hash_key(SUBMIT_KEY)),
    ApiKey(name="agents", scopes=frozenset({"read", "operate"}), digest=hash_key(OPERATE_KEY)),
    ApiKey(
        name="admin", scopes=frozenset({"submit", "read", "operate"}), digest=hash_key(BOTH_KEY)
    ),
]


@pytest.fixture(scope="session")
def database_url(database_url: str) -> Iterator[str]:
    """A database of the ingest tests' own. The session's end-to-end stack shares the other one,
    and its outbox relay would publish the rows these tests write (and mask what they check)."""
    with own_database(database_url, "ingest") as url:
        yield url


def ingest_settings(rabbitmq_url: str, database_url: str, **overrides: Any) -> IngestSettings:
    # The shared settings are read by their environment names only (no prefix, no field name).
    values: dict[str, Any] = {
        "RABBITMQ_URL": rabbitmq_url,
        "DATABASE_URL": database_url,
        "MIGRATE_ON_START": False,
        "DB_POOL_SIZE": 3,
        "wait_seconds": 0,
        "relay_interval_seconds": 0.2,
        **overrides,
    }
    settings = IngestSettings(**values)
    assert (settings.rabbitmq_url, settings.database_url) == (rabbitmq_url, database_url)
    return settings


@asynccontextmanager
async def serve(settings: IngestSettings) -> AsyncIterator[str]:
    """``create_app(settings)`` under uvicorn on 127.0.0.1; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def vhost_url(rabbitmq_url: str) -> Iterator[str]:
    """A vhost of this test alone."""
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base) as url:
        yield url


async def bind_received_queue(url: str, name: str, **arguments: Any) -> None:
    """A queue for incident.received with no consumer, so published events stay countable."""
    broker = make_broker(url, prefetch=1)
    await broker.connect()
    try:
        exchange = await broker.declare_exchange(EVENTS)
        queue = await broker.declare_queue(
            RabbitQueue(name, durable=True, arguments=arguments or None)  # type: ignore[arg-type]
        )
        await queue.bind(exchange, routing_key=IncidentReceived.routing_key())
    finally:
        await broker.stop()


async def count(database_url: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()
