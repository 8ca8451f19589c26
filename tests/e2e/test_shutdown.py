"""SIGTERM mid-message: the service finishes the message in hand, acks it, and exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from contracts.events import IncidentTicketed
from contracts.topology import NOTIFIER_TICKETED
from incidentflow.messaging import make_broker, publish_event
from incidentflow.stack import REPO_ROOT
from tests.conftest import RABBITMQ_URL, free_port, own_vhost


class SlowInbox:
    """An SMTP server that takes its time with DATA, so a test can act mid-send."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()
        self.messages: list[bytes] = []

    # aiosmtpd's hook name.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:

        self.started.set()
        await asyncio.sleep(self.seconds)
        self.messages.append(envelope.original_content or b"")
        return "250 OK"


@pytest.fixture
def isolated_rabbitmq_url(rabbitmq_url: str) -> Iterator[str]:
    # Its own vhost: the session's stack must not consume this test's messages.
    with own_vhost(RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url) as url:
        yield url


async def test_sigterm_mid_message_finishes_it_and_loses_nothing(
    isolated_rabbitmq_url: str, database_url: str, tmp_path: Path
) -> None:
    inbox = SlowInbox(seconds=3)
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    port = free_port()
    log = (tmp_path / "notifier.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "services.notifier.app:app",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "20",
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={
            **os.environ,
            "RABBITMQ_URL": isolated_rabbitmq_url,
            "DATABASE_URL": database_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
        },
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "notifier did not start"
            time.sleep(0.2)

        event = await ticketed_incident(database_url)
        broker = make_broker(isolated_rabbitmq_url, prefetch=1)
        await broker.connect()
        try:
            await publish_event(broker, event)
        finally:
            await broker.stop()
        assert inbox.started.wait(10), "the email was never started"
        os.killpg(process.pid, signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: exit status is -SIGTERM.
        assert process.wait(30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        controller.stop()

    # The email went out whole, the step was recorded, and the message was acked, not requeued.
    assert len(inbox.messages) == 1 and b"Issue Received" in inbox.messages[0]
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.fetchval(
            "SELECT status FROM notifications WHERE incident_id = $1 AND channel = 'email'",
            event.incident_id,
        )
        acknowledged = await conn.fetchval(
            "SELECT acknowledged_at FROM incidents WHERE id = $1", event.incident_id
        )
    finally:
        await conn.close()
    assert status == "sent" and acknowledged is not None
    connection = await aio_pika.connect(isolated_rabbitmq_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(NOTIFIER_TICKETED.queue_name)
        assert queue.declaration_result.message_count == 0
    finally:
        await connection.close()


async def ticketed_incident(database_url: str) -> IncidentTicketed:
    event = IncidentTicketed(
        incident_id=uuid.uuid4(),
        customer_id="c-1",
        channel="email",
        message="I was charged twice",
        email="slow@example.com",
        created_at=datetime.now(UTC),
        sentiment="negative",
        polarity=-0.5,
        classification="duplicate_payment",
        confidence=0.9,
        reason="twice",
        classifier_model="local",
        ticket_id="TKT-0000beef",
        ticket_fallback=True,
    )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO incidents (id, customer_id, channel, message, email, created_at, ticket_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            event.incident_id,
            event.customer_id,
            event.channel,
            event.message,
            event.email,
            event.created_at,
            event.ticket_id,
        )
    finally:
        await conn.close()
    return event
