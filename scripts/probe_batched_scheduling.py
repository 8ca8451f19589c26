"""Probe: how fast the reminder service schedules when ``incident.ticketed`` arrives one
event per message, or BATCH events per message (incidentflow.batched_events).

COUNT events are published first (bare aio-pika, to the real ``reminder.incident-ticketed``
queue), then the reminder service's own subscriber, built as the service builds it, consumes
them in this process, timed alone: scheduling without the firing that overlaps it in
``make bench-reminders``. Own vhost and database; the follow-up delay is an hour, so nothing
fires.

Usage: python scripts/probe_batched_scheduling.py [--count 20000] [--batch 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_broker import broker_cpu_s, own_cpu_s  # noqa: E402
from bench_reminders import bench_message, bench_ticketed, insert_bench_incidents  # noqa: E402

from contracts.events import IncidentTicketed  # noqa: E402
from contracts.topology import EVENTS, REMINDER_TICKETED  # noqa: E402
from incidentflow.db import migrate  # noqa: E402
from incidentflow.service import ServiceRuntime  # noqa: E402
from incidentflow_tools.sandbox import own_database, own_vhost  # noqa: E402
from services.reminder.handlers import Reminders, register  # noqa: E402
from services.reminder.settings import ReminderSettings  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")


async def prepublish(amqp: str, events: list[IncidentTicketed], batch: int) -> None:
    connection = await aio_pika.connect(amqp)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(EVENTS.name, "topic", durable=True)
    single = await channel.declare_queue(
        REMINDER_TICKETED.queue_name, durable=True, arguments=REMINDER_TICKETED.queue.arguments
    )
    await single.bind(exchange, REMINDER_TICKETED.routing_key)
    in_flight = asyncio.Semaphore(200)

    async def publish(chunk: list[IncidentTicketed]) -> None:
        async with in_flight:
            await exchange.publish(bench_message(chunk), routing_key=REMINDER_TICKETED.routing_key)

    await asyncio.gather(*(publish(events[i : i + batch]) for i in range(0, len(events), batch)))
    await connection.close()


async def probe(amqp: str, database: str, count: int, batch: int) -> None:
    await migrate(database)
    ids = [uuid.uuid4() for _ in range(count)]
    now = datetime.now(UTC)
    await insert_bench_incidents(database, ids, now, ticketed=True)
    conn = await asyncpg.connect(database)
    await prepublish(amqp, [bench_ticketed(i, now) for i in ids], batch)
    # The settings read the environment (their fields have aliases).
    os.environ.update(RABBITMQ_URL=amqp, DATABASE_URL=database, DB_POOL_SIZE="20")
    settings = ReminderSettings(
        delay_seconds=3600, escalation_seconds=0, prefetch=200 if batch == 1 else 8
    )
    runtime = ServiceRuntime("reminder", settings)
    reminders = Reminders(runtime, settings)
    register(runtime, reminders)

    try:
        async with runtime.lifespan():
            broker0, own0, wall0 = broker_cpu_s(), own_cpu_s(), time.monotonic()
            await runtime.broker.start()
            while await conn.fetchval("SELECT count(*) FROM reminders") < count:
                await asyncio.sleep(0.1)
            wall = time.monotonic() - wall0
            service_us = (own_cpu_s() - own0) / count * 1e6
            broker_us = (broker_cpu_s() - broker0) / count * 1e6
            await runtime.broker.stop()
    finally:
        await conn.close()
    print(
        f"batch={batch}: {count / wall:,.0f} scheduled/s; CPU per reminder: "
        f"reminder service {service_us:.0f} us, broker {broker_us:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    with (
        own_vhost(RABBITMQ_URL, "probe") as amqp,
        own_database(DATABASE_URL, "probe") as database,
    ):
        asyncio.run(probe(amqp, database, args.count, args.batch))


if __name__ == "__main__":
    main()
