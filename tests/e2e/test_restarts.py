"""Follow-ups survive a restart of RabbitMQ and a restart of Postgres: none lost, none twice.

These restart the servers the run uses, through the command INCIDENTFLOW_SERVERS_CTL names
(scripts/servers.sh for the project's own servers, which `make test` sets).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aio_pika
import pytest

from incidentflow_tools.sandbox import (
    SERVERS_CTL,
    restart_postgres,
    restart_rabbitmq,
    servers_ctl,
)
from tests.e2e.conftest import publish
from tests.e2e.test_reminders import (
    DELAY,
    ReminderProcess,
    declare_requests_queue,
    new_incident,
    reminder_state,
    requests_for,
    wait_scheduled,
)


def require_servers_ctl() -> None:
    if servers_ctl() is None:
        message = f"{SERVERS_CTL} is needed to restart the servers under test"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize(
    ("restart", "pause"),
    [
        # While the follow-ups wait in the delay queues.
        pytest.param(restart_rabbitmq, 1.0, id="rabbitmq"),
        # Just as they fall due, so firing meets a database that is away.
        pytest.param(restart_postgres, DELAY - 0.5, id="postgres"),
    ],
)
async def test_reminders_survive_a_server_restart(
    restart: Callable[[], None],
    pause: float,
    isolated_rabbitmq_url: str,
    own_database_url: str,
    tmp_path: Path,
) -> None:
    require_servers_ctl()
    service = ReminderProcess(isolated_rabbitmq_url, own_database_url, tmp_path / "reminder.log")
    service.start()
    try:
        # The notifier's queue must exist before requests are published into it.
        connection = await aio_pika.connect(isolated_rabbitmq_url)
        await declare_requests_queue(await connection.channel())
        await connection.close()
        events = [await new_incident(own_database_url) for _ in range(5)]
        await publish(isolated_rabbitmq_url, *events)
        await wait_scheduled(own_database_url, *events)
        time.sleep(pause)
        restart()
        connection = await connect_when_back(isolated_rabbitmq_url)
        try:
            queue = await declare_requests_queue(await connection.channel())
            arrived = await requests_for(queue, wait=DELAY + 25)
        finally:
            await connection.close()
    finally:
        service.kill(signal.SIGTERM)
    for event in events:
        assert arrived.count(str(event.incident_id)) == 1, arrived
        assert await reminder_state(own_database_url, event.incident_id) == "requested"


async def connect_when_back(url: str) -> aio_pika.abc.AbstractConnection:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await aio_pika.connect(url)
        except (OSError, aio_pika.exceptions.AMQPError):
            assert time.monotonic() < deadline, "broker did not come back"
            time.sleep(0.5)
