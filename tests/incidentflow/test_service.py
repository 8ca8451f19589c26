"""A service started while Postgres or RabbitMQ is away waits for it instead of exiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from incidentflow.service import ServiceRuntime
from incidentflow.settings import CommonSettings
from incidentflow_tools.sandbox import free_port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def forwarder(port: int, target: str) -> AsyncIterator[None]:
    """127.0.0.1:port → target (host:port): the server "comes back" when this starts."""
    host, target_port = target.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    assert parts.hostname is not None
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{port}")
    return parts._replace(netloc=netloc).geturl()


@pytest.mark.parametrize("away", ["postgres", "rabbitmq"])
async def test_start_waits_for_a_server_that_comes_back(
    rabbitmq_url: str, database_url: str, away: str
) -> None:
    port = free_port()
    real = urlsplit(database_url if away == "postgres" else rabbitmq_url)
    settings = CommonSettings(
        RABBITMQ_URL=through(rabbitmq_url, port) if away == "rabbitmq" else rabbitmq_url,
        DATABASE_URL=through(database_url, port) if away == "postgres" else database_url,
        MIGRATE_ON_START=True,
        STARTUP_WAIT_SECONDS=30,
    )
    runtime = ServiceRuntime("waiter", settings)

    async def come_back_later() -> None:
        await asyncio.sleep(2)
        async with forwarder(port, f"{real.hostname}:{real.port}"):
            await started.wait()

    started = asyncio.Event()
    comeback = asyncio.create_task(come_back_later())
    began = time.monotonic()
    async with runtime.lifespan():
        waited = time.monotonic() - began
        started.set()
        async with runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        assert await runtime.broker.ping(timeout=5)
    await comeback
    assert waited >= 2, "started before the server was there"


async def test_start_gives_up_after_the_wait(rabbitmq_url: str) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    runtime = ServiceRuntime(
        "waiter",
        CommonSettings(RABBITMQ_URL=rabbitmq_url, DATABASE_URL=dead, STARTUP_WAIT_SECONDS=1.5),
    )
    began = time.monotonic()
    with pytest.raises(OSError):
        async with runtime.lifespan():
            pass
    assert 1.5 <= time.monotonic() - began < 10
