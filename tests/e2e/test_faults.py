"""Redelivered events change nothing; an absent broker never turns a valid request into a 500."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import asyncpg
import httpx

from contracts.events import IncidentTicketed, ReminderRequested
from contracts.topology import NOTIFIER_REMINDER, NOTIFIER_TICKETED, REMINDER_TICKETED
from incidentflow_tools.stack import REPO_ROOT, Stack
from tests.conftest import free_port
from tests.e2e.conftest import (
    audited_event,
    consumed_after,
    incident,
    publish,
    read_inbox,
    submit,
    wait_until,
)


async def test_redelivered_ticketed_event_sends_nothing_twice(
    stack: Stack, rabbitmq_url: str, database_url: str
) -> None:
    created = submit(stack, "Please refund the duplicate charge from Monday").json()
    conn = await asyncpg.connect(database_url)
    try:
        audit = await conn.fetchval(
            """
            SELECT payload FROM audit_events
            WHERE incident_id = $1 AND service = 'notifier' AND event_name = 'incident.ticketed'
            """,
            created["incident_id"],
        )
        assert audit is not None
        event = await audited_event(conn, IncidentTicketed, audit)
        acknowledgement = f"Support Ticket #{created['ticket_id']} - Issue Received"
        mails_before = [m["Subject"] for m in read_inbox(stack.mail_dir)].count(acknowledgement)
        consumed = consumed_after(stack, {NOTIFIER_TICKETED: 3, REMINDER_TICKETED: 3})
        await publish(rabbitmq_url, event, event, event)
        consumed()
        rows = await conn.fetch(
            "SELECT channel, kind, attempts FROM notifications WHERE incident_id = $1",
            created["incident_id"],
        )
        reminders = await conn.fetchval(
            "SELECT count(*) FROM reminders WHERE incident_id = $1", created["incident_id"]
        )
    finally:
        await conn.close()
    assert mails_before == 1
    assert [m["Subject"] for m in read_inbox(stack.mail_dir)].count(acknowledgement) == 1
    assert sorted((r["channel"], r["kind"], r["attempts"]) for r in rows) == [("email", "ack", 1)]
    assert reminders == 2  # one follow-up and one escalation, not one per delivery


async def test_ingest_accepts_while_the_broker_is_unreachable(
    stack: Stack, database_url: str
) -> None:
    """A second ingest whose broker is unreachable still accepts (202) into the outbox;
    the running stack's relay, which shares the database, then delivers it."""
    port = free_port()
    dead_broker = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "services.ingest.app:app", "--port", str(port)],
        cwd=REPO_ROOT,
        env={"RABBITMQ_URL": dead_broker, "DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "ingest did not start"
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 503
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/incidents",
            json={
                "customer_id": "5",
                "channel": "sms",
                "message": "charged twice",
                "email": "x@example.com",
            },
            headers={"Prefer": "wait=0"},
            timeout=10,
        )
        assert response.status_code == 202
        incident_id = response.json()["incident_id"]
    finally:
        process.terminate()
        process.wait(20)
    conn = await asyncpg.connect(database_url)
    try:
        # Stored with its event; the outbox row itself may be gone already: the stack's relay
        # publishes it and deletes what it published.
        stored = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE id = $1", uuid.UUID(incident_id)
        )
    finally:
        await conn.close()
    assert stored == 1
    deadline = time.monotonic() + 20
    while True:
        state = httpx.get(f"{stack.url('ingest')}/api/incidents/{incident_id}", timeout=5).json()
        if state["acknowledged_at"] is not None:
            break
        assert time.monotonic() < deadline, "accepted incident was never processed"
        time.sleep(0.3)


async def test_a_reminder_request_delivered_again_sends_no_second_email(
    stack: Stack, rabbitmq_url: str, database_url: str
) -> None:
    created = submit(stack, "My refund is still missing, please follow up").json()
    wait_until(lambda: incident(stack, created["incident_id"])["reminder_sent"], 20)
    conn = await asyncpg.connect(database_url)
    try:
        payload = await conn.fetchval(
            """
            SELECT payload FROM audit_events
            WHERE incident_id = $1 AND service = 'notifier' AND event_name = 'reminder.requested'
            """,
            created["incident_id"],
        )
        request = await audited_event(conn, ReminderRequested, payload)
    finally:
        await conn.close()
    consumed = consumed_after(stack, {NOTIFIER_REMINDER: 3})
    await publish(rabbitmq_url, request, request, request)
    consumed()
    subject = f"Support Ticket #{created['ticket_id']} - Follow-up: Still Open"
    assert [m["Subject"] for m in read_inbox(stack.mail_dir)].count(subject) == 1
