"""Follow-ups survive a killed reminder service; the sweep fires what the broker lost;
operators list, cancel and fire reminders from the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from contracts.events import IncidentTicketed, ReminderRequested
from contracts.topology import EVENTS, NOTIFIER_REMINDER
from incidentflow.batched_events import event_bodies
from incidentflow.service import ServiceRuntime
from incidentflow_tools.stack import Stack
from services.reminder import handlers
from services.reminder.handlers import Reminders
from services.reminder.settings import ReminderSettings
from tests.conftest import free_port
from tests.e2e.conftest import (
    incident,
    insert_ticketed_incident,
    plain_text,
    publish,
    read_inbox,
    start_service,
    submit,
)

DELAY = 4


class ReminderProcess:
    def __init__(self, rabbitmq_url: str, database_url: str, log: Path, delay: int = DELAY) -> None:
        self.env = {
            "RABBITMQ_URL": rabbitmq_url,
            "DATABASE_URL": database_url,
            "REMINDER_DELAY_SECONDS": str(delay),
            "REMINDER_SWEEP_GRACE_SECONDS": "2",
            "REMINDER_SWEEP_INTERVAL_SECONDS": "1",
        }
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_service("reminder", self.port, self.env, self.log)

    def kill(self, sig: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)
        self.process.wait(30)


async def declare_requests_queue(
    channel: aio_pika.abc.AbstractChannel,
) -> aio_pika.abc.AbstractQueue:
    """The notifier's queue of reminder requests, declared as notifier would, to count them."""
    exchange = await channel.declare_exchange(EVENTS.name, "topic", durable=True)
    route = NOTIFIER_REMINDER
    queue = await channel.declare_queue(
        route.queue_name, durable=True, arguments=route.queue.arguments
    )
    await queue.bind(exchange, route.routing_key)
    return queue


@pytest.fixture
async def requests_queue(isolated_rabbitmq_url: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(isolated_rabbitmq_url)
    try:
        yield await declare_requests_queue(await connection.channel())
    finally:
        await connection.close()


async def requests_for(queue: aio_pika.abc.AbstractQueue, wait: float) -> list[str]:
    """Incident ids of the distinct reminder requests that arrive within ``wait`` seconds.

    Delivery is at least once: when the sweep and the delayed message race, the same request
    (same event_id) may be published twice, and notifier's claim sends it once. A second
    *distinct* request for one reminder would be a real duplicate, and is counted.
    """
    found: dict[uuid.UUID, str] = {}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = await queue.get(fail=False)
        if message is None:
            time.sleep(0.2)
            continue
        await message.ack()
        for body in event_bodies(message.body, message.headers):
            request = ReminderRequested.model_validate_json(body)
            found[request.event_id] = str(request.incident_id)
    return list(found.values())


async def new_incident(database_url: str) -> IncidentTicketed:
    return await insert_ticketed_incident(
        database_url, message="still waiting", classification="refund_request"
    )


async def reminder_state(database_url: str, incident_id: uuid.UUID) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT state FROM reminders WHERE incident_id = $1 AND kind = 'follow_up'",
            incident_id,
        )
    finally:
        await conn.close()


async def wait_scheduled(database_url: str, *events: IncidentTicketed) -> None:
    """Until the reminder service has recorded each incident's follow-up (10 s at most)."""
    deadline = time.monotonic() + 10
    for event in events:
        while await reminder_state(database_url, event.incident_id) != "scheduled":
            assert time.monotonic() < deadline, "reminders were not scheduled"
            time.sleep(0.2)


async def test_kill_9_of_the_reminder_service_loses_no_reminder_and_sends_none_twice(
    isolated_rabbitmq_url: str,
    own_database_url: str,
    tmp_path: Path,
    requests_queue: aio_pika.abc.AbstractQueue,
) -> None:
    service = ReminderProcess(isolated_rabbitmq_url, own_database_url, tmp_path / "reminder.log")
    service.start()
    event = await new_incident(own_database_url)
    await publish(isolated_rabbitmq_url, event)
    await wait_scheduled(own_database_url, event)
    service.kill(signal.SIGKILL)  # while the follow-up waits in the delay queues
    time.sleep(DELAY + 1)  # it falls due while nobody listens
    service.start()
    try:
        arrived = await requests_for(requests_queue, wait=DELAY + 4)
    finally:
        service.kill(signal.SIGTERM)
    assert arrived == [str(event.incident_id)]
    assert await reminder_state(own_database_url, event.incident_id) == "requested"


async def test_a_batch_of_ticketed_incidents_gets_one_follow_up_each_despite_a_bad_one(
    isolated_rabbitmq_url: str,
    own_database_url: str,
    tmp_path: Path,
    requests_queue: aio_pika.abc.AbstractQueue,
) -> None:
    """incident.ticketed as ticketing sends it at load: several in one message. An event the
    service cannot handle (its incident is not in the database) waits for its retry alone."""
    service = ReminderProcess(isolated_rabbitmq_url, own_database_url, tmp_path / "reminder.log")
    service.start()
    try:
        events = [await new_incident(own_database_url) for _ in range(3)]
        unknown = events[0].model_copy(
            update={"incident_id": uuid.uuid4(), "event_id": uuid.uuid4()}
        )
        await publish(isolated_rabbitmq_url, *events, unknown, batched=True)
        await wait_scheduled(own_database_url, *events)
        arrived = await requests_for(requests_queue, wait=DELAY + 3)
    finally:
        service.kill(signal.SIGTERM)
    assert sorted(arrived) == sorted(str(e.incident_id) for e in events)
    assert await reminder_state(own_database_url, unknown.incident_id) is None
    log = (tmp_path / "reminder.log").read_text()
    assert "handler failed, will retry" in log and str(unknown.event_id) in log


async def test_sweep_fires_a_reminder_the_broker_lost_and_one_whose_request_lapsed(
    isolated_rabbitmq_url: str,
    own_database_url: str,
    tmp_path: Path,
    requests_queue: aio_pika.abc.AbstractQueue,
) -> None:
    lost, lapsed = await new_incident(own_database_url), await new_incident(own_database_url)
    conn = await asyncpg.connect(own_database_url)
    try:
        # A reminder the database knows about but no message carries.
        await conn.execute(
            "INSERT INTO reminders (incident_id, kind, due_at) VALUES ($1, 'follow_up', $2)",
            lost.incident_id,
            datetime.now(UTC) - timedelta(seconds=30),
        )
        # One an earlier version's process claimed two minutes ago and died before the
        # broker confirmed its request (the lease is a minute).
        await conn.execute(
            """
            INSERT INTO reminders (incident_id, kind, due_at, state, attempts, updated_at)
            VALUES ($1, 'follow_up', $2, 'requesting', 1, $2)
            """,
            lapsed.incident_id,
            datetime.now(UTC) - timedelta(minutes=2),
        )
    finally:
        await conn.close()
    service = ReminderProcess(isolated_rabbitmq_url, own_database_url, tmp_path / "reminder.log")
    service.start()
    try:
        arrived = await requests_for(requests_queue, wait=6)
    finally:
        service.kill(signal.SIGTERM)
    # Other tests' overdue reminders in this database may be swept too; ours exactly once.
    for event in (lost, lapsed):
        assert arrived.count(str(event.incident_id)) == 1
        assert await reminder_state(own_database_url, event.incident_id) == "requested"


async def test_a_firing_the_broker_refuses_leaves_its_reminder_scheduled_and_unaudited(
    isolated_rabbitmq_url: str, own_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = await new_incident(own_database_url)
    conn = await asyncpg.connect(own_database_url)
    try:
        reminder_id = await conn.fetchval(
            """
            INSERT INTO reminders (incident_id, kind, due_at)
            VALUES ($1, 'follow_up', now() - interval '30 seconds') RETURNING id
            """,
            event.incident_id,
        )
        monkeypatch.setenv("RABBITMQ_URL", isolated_rabbitmq_url)
        monkeypatch.setenv("DATABASE_URL", own_database_url)
        settings = ReminderSettings()
        runtime = ServiceRuntime("reminder", settings)
        reminders = Reminders(runtime, settings)
        async with runtime.lifespan():
            # Nobody has declared the notifier's queue: the request is unroutable, refused.
            with pytest.raises(Exception):  # noqa: B017 - aio-pika's DeliveryError
                await reminders.fire_due(datetime.now(UTC), reminder_id=reminder_id)
            assert await reminder_state(own_database_url, event.incident_id) == "scheduled"
            audited = "SELECT count(*) FROM audit_events WHERE incident_id = $1"
            assert await conn.fetchval(audited, event.incident_id) == 0

            connection = await aio_pika.connect(isolated_rabbitmq_url)
            try:
                queue = await declare_requests_queue(await connection.channel())
                assert await reminders.fire_due(datetime.now(UTC), reminder_id=reminder_id) == 1
                assert await requests_for(queue, wait=1) == [str(event.incident_id)]
            finally:
                await connection.close()
            assert await reminder_state(own_database_url, event.incident_id) == "requested"
            assert await conn.fetchval(audited, event.incident_id) == 1
    finally:
        await conn.close()


async def test_a_round_of_requests_goes_in_messages_of_a_bounded_size(
    isolated_rabbitmq_url: str, own_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [await new_incident(own_database_url) for _ in range(5)]
    conn = await asyncpg.connect(own_database_url)
    try:
        await conn.executemany(
            """
            INSERT INTO reminders (incident_id, kind, due_at)
            VALUES ($1, 'follow_up', now() - interval '1 second')
            """,
            [(e.incident_id,) for e in events],
        )
    finally:
        await conn.close()
    monkeypatch.setattr(handlers, "REQUESTS_PER_MESSAGE", 2)
    monkeypatch.setenv("RABBITMQ_URL", isolated_rabbitmq_url)
    monkeypatch.setenv("DATABASE_URL", own_database_url)
    settings = ReminderSettings()
    runtime = ServiceRuntime("reminder", settings)
    connection = await aio_pika.connect(isolated_rabbitmq_url)
    try:
        queue = await declare_requests_queue(await connection.channel())
        async with runtime.lifespan():
            await Reminders(runtime, settings).fire_due(datetime.now(UTC))
        arrived: list[list[str]] = []
        while (message := await queue.get(fail=False, timeout=2)) is not None:
            await message.ack()
            bodies = event_bodies(message.body, message.headers)
            arrived.append(
                [str(ReminderRequested.model_validate_json(b).incident_id) for b in bodies]
            )
    finally:
        await connection.close()
    # Other tests' overdue reminders in this database may come along; none in a bigger message.
    assert max(len(m) for m in arrived) == 2
    requested = [incident_id for m in arrived for incident_id in m]
    assert all(requested.count(str(e.incident_id)) == 1 for e in events)


def run_cli(*args: str, stack: Stack, database_url: str, rabbitmq_url: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "incidentflow_tools.cli", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": database_url, "RABBITMQ_URL": rabbitmq_url},
    ).stdout


def test_operator_cancels_a_reminder_from_the_cli(
    stack: Stack, database_url: str, rabbitmq_url: str
) -> None:
    created = submit(stack, "Still no refund, please check").json()
    # Cancelled first: the escalation falls due 8 s after the incident came in, and a CLI
    # process starting on a busy machine takes seconds of that.
    assert "cancelled 2 reminder(s)" in run_cli(
        "reminders",
        "cancel",
        created["incident_id"],
        stack=stack,
        database_url=database_url,
        rabbitmq_url=rabbitmq_url,
    )
    shown = run_cli(
        "reminders",
        "show",
        created["incident_id"],
        stack=stack,
        database_url=database_url,
        rabbitmq_url=rabbitmq_url,
    )
    assert "cancelled" in shown and "scheduled" not in shown
    time.sleep(DELAY + 3)
    state = incident(stack, created["incident_id"])
    assert state["reminder"]["state"] == "cancelled" and state["reminder_sent"] is False
    assert any(e["event_name"] == "reminder.cancelled" for e in state["audit"])
    subjects = [m["Subject"] for m in read_inbox(stack.mail_dir)]
    assert f"Support Ticket #{created['ticket_id']} - Follow-up: Still Open" not in subjects
    listed = run_cli(
        "reminders",
        "list",
        "--state",
        "cancelled",
        stack=stack,
        database_url=database_url,
        rabbitmq_url=rabbitmq_url,
    )
    assert created["incident_id"] in listed


async def test_fire_now_brings_a_day_away_reminder_forward(
    isolated_rabbitmq_url: str,
    own_database_url: str,
    tmp_path: Path,
    requests_queue: aio_pika.abc.AbstractQueue,
) -> None:
    service = ReminderProcess(
        isolated_rabbitmq_url, own_database_url, tmp_path / "r.log", delay=86_400
    )
    service.start()
    try:
        event = await new_incident(own_database_url)
        await publish(isolated_rabbitmq_url, event)
        await wait_scheduled(own_database_url, event)
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "incidentflow_tools.cli",
                "reminders",
                "fire-now",
                str(event.incident_id),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={
                **os.environ,
                "DATABASE_URL": own_database_url,
                "RABBITMQ_URL": isolated_rabbitmq_url,
            },
        ).stdout
        assert "fired 2 reminder(s)" in output  # the follow-up and the escalation
        arrived = await requests_for(requests_queue, wait=5)
    finally:
        service.kill(signal.SIGTERM)
    assert arrived.count(str(event.incident_id)) == 2
    assert await reminder_state(own_database_url, event.incident_id) == "requested"


def test_open_incident_is_escalated_to_the_support_team(stack: Stack) -> None:
    created = submit(stack, "I reported fraud on my card and nobody has called me").json()
    subject = f"[Escalation] Ticket #{created['ticket_id']} still open"
    deadline = time.monotonic() + 20
    while subject not in [m["Subject"] for m in read_inbox(stack.mail_dir)]:
        assert time.monotonic() < deadline, "no escalation within 20 s"
        time.sleep(0.3)
    [mail] = [m for m in read_inbox(stack.mail_dir) if m["Subject"] == subject]
    assert mail["To"] == "support-team@company.com"
    assert created["incident_id"] in plain_text(mail)
    state = incident(stack, created["incident_id"])
    kinds = {(r["kind"], r["state"]) for r in state["reminders"]}
    assert ("escalation", "sent") in kinds
    assert ("email", "escalation") in {(n["channel"], n["kind"]) for n in state["notifications"]}
