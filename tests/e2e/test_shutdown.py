"""SIGTERM mid-message: the service finishes the message in hand, acks it, and exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import aio_pika
import asyncpg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from contracts.topology import NOTIFIER_TICKETED
from tests.conftest import free_port
from tests.e2e.conftest import insert_ticketed_incident, publish, start_service


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


async def test_sigterm_mid_message_finishes_it_and_loses_nothing(
    isolated_rabbitmq_url: str, database_url: str, tmp_path: Path
) -> None:
    inbox = SlowInbox(seconds=3)
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    port = free_port()
    process = start_service(
        "notifier",
        port,
        {
            "RABBITMQ_URL": isolated_rabbitmq_url,
            "DATABASE_URL": database_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
        },
        tmp_path / "notifier.log",
    )
    try:
        event = await insert_ticketed_incident(database_url, email="slow@example.com")
        await publish(isolated_rabbitmq_url, event)
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
