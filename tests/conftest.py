"""Shared fixtures: a real RabbitMQ (own vhost), a real Postgres (own database), loopback ports.

Servers come from RABBITMQ_URL / DATABASE_URL or localhost, else from testcontainers where a
Docker engine runs. When none is reachable the run fails under CI=true and skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from incidentflow_tools.sandbox import free_port, free_port_block, own_database, own_vhost

__all__ = ["free_port", "free_port_block"]  # the tests import them from here

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")
# The tests mail and text the same few addresses and numbers all day, in one database; the
# limit per recipient is tested where it is set on purpose (tests/security/).
os.environ.setdefault("NOTIFIER_LIMIT_PER_RECIPIENT", "1000000/hour")
# Likewise their follow-ups: one per customer at a time is tested where it is set on purpose
# (tests/services/reminder/test_one_per_customer.py).
os.environ.setdefault("REMINDER_CUSTOMER_GAP_SECONDS", "0")
# Ingest apps made by tests listen for mail only where a test gives them a port of its own.
os.environ.setdefault("INTAKE_SMTP_PORT", "off")


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


@pytest.fixture(scope="session", autouse=True)
def notifier_journals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Notifiers started by tests journal into this run's temporary directory, not var/."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTIFIER_JOURNAL_DIR", str(tmp_path_factory.mktemp("notifier-journal")))
        yield


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A broker URL on a vhost of this test run, so a running `make up` stack is untouched."""
    url = RABBITMQ_URL
    container = None
    if not reachable(url, 5672):
        if not docker_available():
            missing(f"RabbitMQ at {url}")
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:4.3-management").start()
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


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test run."""
    base = DATABASE_URL
    container = None
    if not reachable(base, 5432):
        if not docker_available():
            missing(f"PostgreSQL at {base}")
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:18-trixie").start()
        base = container.get_connection_url(driver=None)
    try:
        with own_database(base) as url:
            yield url
    finally:
        if container is not None:
            container.stop()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from incidentflow.db import create_pool

    pool = await create_pool(database_url, 4)
    try:
        yield pool
    finally:
        await pool.close()
