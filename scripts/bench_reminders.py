"""Benchmark of durable follow-ups: COUNT reminders through the real delay queues and service.

Starts the reminder service as real processes (two replicas by default) on their own vhost and
database, creates COUNT open incidents, publishes their incident.ticketed events (BATCH per
message, framed as ticketing frames the events it publishes together), and stands in for the
notifier: it consumes reminder.requested and records when each arrived against when it was due.
With PACE, an incident's time is its place in the offered load (start + i / PACE), not when a
publisher got to it: a publisher that falls behind counts as lateness.

Usage: make bench-reminders [COUNT=1000000]   (python scripts/bench_reminders.py --count N)
Last line: scheduled=N fired=N lost=N duplicates=N p99_lateness_ms=N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.events import IncidentTicketed, ReminderRequested  # noqa: E402
from contracts.topology import EVENTS, NOTIFIER_REMINDER  # noqa: E402
from incidentflow.batched_events import (  # noqa: E402
    BATCH_CONTENT_TYPE,
    BATCH_HEADER,
    encode_batch,
    event_bodies,
)
from incidentflow_tools.sandbox import own_database, own_vhost  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def broker_memory_mb() -> float:
    """Resident memory of the local RabbitMQ node (its beam.smp process), read from /proc.

    Cheap on purpose: `rabbitmqctl status` starts an Erlang VM and would steal the CPU it
    is measuring.
    """
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if text.startswith("Name:\tbeam.smp"):
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def bench_ticketed(incident_id: uuid.UUID, created_at: datetime) -> IncidentTicketed:
    """The incident.ticketed the benchmark sends for one of its incidents."""
    return IncidentTicketed(
        incident_id=incident_id,
        customer_id="bench",
        channel="email",
        message="charged twice",
        email="b@example.com",
        created_at=created_at,
        sentiment="neutral",
        polarity=0.0,
        classification="duplicate_payment",
        confidence=0.9,
        reason="bench",
        classifier_model="local",
        ticket_id="TKT-bench",
        ticket_fallback=True,
    )


def bench_message(events: list[IncidentTicketed]) -> aio_pika.Message:
    """``events`` in one message, framed as ticketing frames what its handlers publish
    together (one event: an ordinary message)."""
    batched = len(events) > 1
    return aio_pika.Message(
        encode_batch([(e, {}) for e in events])
        if batched
        else events[0].model_dump_json().encode(),
        headers={BATCH_HEADER: len(events)} if batched else None,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type=BATCH_CONTENT_TYPE if batched else "application/json",
        message_id=str(events[0].event_id),
    )


async def insert_bench_incidents(
    database: str, ids: list[uuid.UUID], created_at: datetime, *, ticketed: bool
) -> None:
    """The open incidents the benchmarks' events are about, already ticketed or not yet."""
    columns = ["id", "customer_id", "channel", "message", "email", "created_at"]
    record = ("email", "charged twice", "b@example.com", created_at)
    conn = await asyncpg.connect(database)
    try:
        # A customer each: one customer's follow-ups would go out one at a time (docs/adr/0057).
        await conn.copy_records_to_table(
            "incidents",
            records=[
                (i, f"bench-{i}", *record, *(("TKT-bench",) if ticketed else ())) for i in ids
            ],
            columns=[*columns, *(["ticket_id"] if ticketed else [])],
        )
    finally:
        await conn.close()


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main(count: int, delay: int, publishers: int, replicas: int, batch: int, rate: float) -> None:
    with (
        own_vhost(RABBITMQ_URL, "bench") as amqp,
        own_database(DATABASE_URL, "bench") as database,
    ):
        asyncio.run(bench(amqp, database, count, delay, publishers, replicas, batch, rate))


async def bench(
    amqp: str,
    database: str,
    count: int,
    delay: int,
    publishers: int,
    replicas: int,
    batch: int,
    rate: float,
) -> None:
    (REPO / "var").mkdir(exist_ok=True)
    log = (REPO / "var" / "bench-reminders.log").open("wb")
    # Replicas, as a deployment scales the service: ticks and claims are safe to share.
    ports = [18_765 + i for i in range(replicas)]
    services = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "services.reminder.app:app", "--port", str(port)],
            cwd=REPO,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "RABBITMQ_URL": amqp,
                "DATABASE_URL": database,
                "REMINDER_DELAY_SECONDS": str(delay),
                "REMINDER_ESCALATION_SECONDS": "0",
                "REMINDER_PREFETCH": os.environ.get("REMINDER_PREFETCH", "200"),
                "DB_POOL_SIZE": "20",
                "LOG_LEVEL": "WARNING",
            },
        )
        for port in ports
    ]
    connection = await aio_pika.connect(amqp)
    try:
        deadline = time.monotonic() + 60
        for port in ports:
            while not ready(port):
                if time.monotonic() > deadline:
                    raise RuntimeError("reminder service did not start")
                await asyncio.sleep(0.2)

        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(EVENTS.name, "topic", durable=True)
        requests = await channel.declare_queue(
            NOTIFIER_REMINDER.queue_name, durable=True, arguments=NOTIFIER_REMINDER.queue.arguments
        )
        await requests.bind(exchange, NOTIFIER_REMINDER.routing_key)

        fired: dict[uuid.UUID, int] = {}
        lateness_ms: list[float] = []
        all_fired = asyncio.Event()

        async def on_request(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrived = datetime.now(UTC)
            for body in event_bodies(message.body, message.headers):
                event = ReminderRequested.model_validate_json(body)
                fired[event.incident_id] = fired.get(event.incident_id, 0) + 1
                if fired[event.incident_id] == 1:
                    due = created[event.incident_id] + timedelta(seconds=delay)
                    lateness_ms.append((arrived - due).total_seconds() * 1000)
            await message.ack()
            if len(fired) >= count:
                all_fired.set()

        ids = [uuid.uuid4() for _ in range(count)]
        created: dict[uuid.UUID, datetime] = {}
        await insert_bench_incidents(database, ids, datetime.now(UTC), ticketed=True)
        await requests.consume(on_request)

        peak_memory = broker_memory_mb()
        started = time.monotonic()
        wall_start = datetime.now(UTC)
        semaphore = asyncio.Semaphore(publishers)

        def scheduled_at(index: int) -> datetime:
            """When chunk ``index`` is due in the offered load (start + i / PACE): its
            incidents are created then, so a publisher that falls behind shows as lateness,
            not as a later due time."""
            return wall_start + timedelta(seconds=index * batch / rate)

        async def publish(chunk: list[uuid.UUID], at: datetime | None = None) -> None:
            async with semaphore:
                when = at or datetime.now(UTC)
                events = [bench_ticketed(i, when) for i in chunk]
                created.update(dict.fromkeys(chunk, when))
                await exchange.publish(bench_message(events), routing_key=events[0].routing_key())

        chunks = [ids[i : i + batch] for i in range(0, count, batch)]
        if rate <= 0:
            await asyncio.gather(*(publish(chunk) for chunk in chunks))
        else:
            # Open loop at ``rate`` events/s: each chunk is sent when due, whether or not
            # the earlier ones were confirmed (up to ``publishers`` in flight).
            sending: list[asyncio.Task[None]] = []
            while len(sending) < len(chunks):
                due = min(len(chunks), int((time.monotonic() - started) * rate / batch) + 1)
                sending += [
                    asyncio.create_task(publish(chunks[k], scheduled_at(k)))
                    for k in range(len(sending), due)
                ]
                await asyncio.sleep(0.005)
            await asyncio.gather(*sending)
        published_s = time.monotonic() - started
        # Bounded waits: the benchmark always ends and says what it saw.
        schedule_deadline = time.monotonic() + 300 + count / 100
        conn = await asyncpg.connect(database)
        try:
            # Progress from the id sequence: a count(*) of a million rows every half second
            # would load the database it measures. Checked with a real count at the end.
            while (await conn.fetchval("SELECT max(id) FROM reminders") or 0) < count:
                if time.monotonic() > schedule_deadline:
                    break
                peak_memory = max(peak_memory, broker_memory_mb())
                await asyncio.sleep(0.2)
            scheduled = await conn.fetchval("SELECT count(*) FROM reminders")
        finally:
            await conn.close()
        scheduled_s = time.monotonic() - started
        fire_deadline = time.monotonic() + delay + 120
        while not all_fired.is_set() and time.monotonic() < fire_deadline:
            peak_memory = max(peak_memory, broker_memory_mb())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_fired.wait(), timeout=1)
        await asyncio.sleep(3)  # a duplicate would arrive now
    finally:
        for service in services:
            service.send_signal(signal.SIGTERM)
        for service in services:
            service.wait(30)
        await connection.close()

    fired_once = len(fired)
    duplicates = sum(n - 1 for n in fired.values())
    print(
        f"machine: {os.cpu_count()} cores; count={count} delay={delay}s "
        f"replicas={replicas} batch={batch} rate={f'{rate:,.0f}/s' if rate > 0 else 'unpaced'}"
    )
    print(
        f"published {count} incident.ticketed in {published_s:.1f} s ({count / published_s:,.0f}/s)"
    )
    print(f"scheduling rate (reminders recorded and delayed): {count / scheduled_s:,.0f}/s")
    print(f"broker memory at peak: {peak_memory:,.0f} MB")
    print(
        f"fire lateness: p50={percentile(lateness_ms, 0.5):,.0f} ms "
        f"p99={percentile(lateness_ms, 0.99):,.0f} ms max={max(lateness_ms, default=0):,.0f} ms"
    )
    print(
        f"scheduled={scheduled} fired={fired_once} lost={count - fired_once} "
        f"duplicates={duplicates} p99_lateness_ms={percentile(lateness_ms, 0.99):.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--delay", type=int, default=10)
    parser.add_argument("--publishers", type=int, default=500)
    # Two, as the production overlay runs the reminder service (deploy/k8s/overlays/prod).
    parser.add_argument("--replicas", type=int, default=2, help="reminder service processes")
    # What ticketing sends per message working through a backlog, measured by
    # scripts/probe_ticketing_batches.py (4.1; docs/performance.md); --batch 1 is one message
    # per event.
    parser.add_argument("--batch", type=int, default=4, help="incident.ticketed events per message")
    # 0: publish as fast as the broker confirms (the scheduling rate is then the service's
    # most); N: an open loop at N events/s, to see whether the service keeps up with N.
    parser.add_argument("--rate", type=float, default=0, help="incident.ticketed per second")
    args = parser.parse_args()
    main(args.count, args.delay, args.publishers, args.replicas, args.batch, args.rate)
