"""Shared fixtures: a real RabbitMQ (own vhost), a real Postgres (own database), loopback ports.

Servers come from RABBITMQ_URL / DATABASE_URL or localhost, else from testcontainers where a
Docker engine runs. When none is reachable the run fails under CI=true and skips otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from incidentflow.db import migrate

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname or "localhost", parts.port or default_port), 2
        ).close()
    except OSError:
        return False
    return True


def missing(what: str) -> None:
    message = f"{what} is not reachable and no Docker engine runs for testcontainers"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def docker_available() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports after it."""
    for _ in range(50):
        base = free_port()
        if base + size >= 65535:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A broker URL on a vhost of this test run, so a running `make up` stack is untouched."""
    url = RABBITMQ_URL
    container = None
    if not reachable(url, 5672):
        if not docker_available():
            missing(f"RabbitMQ at {url}")
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        url = (
            f"amqp://guest:guest@{container.get_container_host_ip()}:"
            f"{container.get_exposed_port(5672)}/"
        )
    try:
        with own_vhost(url) as isolated:
            yield isolated
    finally:
        if container is not None:
            container.stop()


@contextmanager
def own_vhost(url: str) -> Iterator[str]:
    """``url`` on a new vhost (deleted afterwards) where the broker is local to rabbitmqctl."""
    if not shutil.which("rabbitmqctl") or urlsplit(url).hostname not in ("localhost", "127.0.0.1"):
        yield url
        return
    vhost = f"incidentflow-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
    )
    try:
        yield urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test run."""
    base = DATABASE_URL
    container = None
    if not reachable(base, 5432):
        if not docker_available():
            missing(f"PostgreSQL at {base}")
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine").start()
        base = container.get_connection_url(driver=None)
    url = urlunsplit(urlsplit(base)._replace(path=f"/incidentflow_test_{uuid.uuid4().hex[:8]}"))
    asyncio.run(migrate(url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))
        if container is not None:
            container.stop()


async def drop_database(url: str) -> None:
    parts = urlsplit(url)
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from incidentflow.db import create_pool

    pool = await create_pool(database_url, 4)
    try:
        yield pool
    finally:
        await pool.close()
