"""Probe: how many ``incident.ticketed`` events the real ticketing service sends per message
when it works through a backlog, i.e. the batch size ``make bench-reminders`` stands in for.

COUNT open incidents and their ``incident.classified`` events are put in place first (the
events one per message, as the classifier sends them at low load); then the ticketing service
starts as a real process (local ticket backend, its default prefetch) on its own vhost and
database, and works through them. Its own ``incidentflow_published_batch_events`` histogram,
read from its /metrics, says how many events its messages carried.

Usage: python scripts/probe_ticketing_batches.py [--count 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_reminders import bench_ticketed, insert_bench_incidents, ready  # noqa: E402

from contracts.events import IncidentClassified, IncidentTicketed  # noqa: E402
from contracts.topology import EVENTS, TICKETING_CLASSIFIED  # noqa: E402
from incidentflow.db import migrate  # noqa: E402
from incidentflow_tools.sandbox import own_database, own_vhost  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")
TICKETED = f"{EVENTS.name}.{IncidentTicketed.routing_key()}"


async def prepare(amqp: str, database: str, count: int) -> None:
    await migrate(database)
    ids = [uuid.uuid4() for _ in range(count)]
    now = datetime.now(UTC)
    await insert_bench_incidents(database, ids, now, ticketed=False)
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EVENTS.name, "topic", durable=True)
        route = TICKETING_CLASSIFIED
        work = await channel.declare_queue(
            route.queue_name, durable=True, arguments=route.queue.arguments
        )
        await work.bind(exchange, route.routing_key)
        # Somebody must listen for incident.ticketed (its publishes are mandatory).
        sink = await channel.declare_queue("probe.incident-ticketed", durable=True)
        await sink.bind(exchange, IncidentTicketed.routing_key())
        in_flight = asyncio.Semaphore(200)

        async def publish(incident_id: uuid.UUID) -> None:
            ticketed = bench_ticketed(incident_id, now)
            event = IncidentClassified(
                **ticketed.model_dump(exclude={"event_id", "ticket_id", "ticket_fallback"})
            )
            async with in_flight:
                await exchange.publish(
                    aio_pika.Message(
                        event.model_dump_json().encode(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                    ),
                    routing_key=route.routing_key,
                )

        await asyncio.gather(*(publish(i) for i in ids))
    finally:
        await connection.close()


def batch_histogram(port: int) -> dict[float, float]:
    """Cumulative bucket counts of incident.ticketed messages by events carried."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "incidentflow_published_batch_events":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels["destination"] == TICKETED:
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


async def ticketed_count(database: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        return int(await conn.fetchval("SELECT count(ticket_id) FROM incidents"))
    finally:
        await conn.close()


def probe(amqp: str, database: str, count: int) -> None:
    asyncio.run(prepare(amqp, database, count))
    port = 18_790
    (REPO / "var").mkdir(exist_ok=True)
    log = (REPO / "var" / "probe-ticketing.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "services.ticketing.app:app", "--port", str(port)],
        cwd=REPO,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RABBITMQ_URL": amqp, "DATABASE_URL": database, "LOG_LEVEL": "WARNING"},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready(port):
            if time.monotonic() > deadline:
                raise RuntimeError("ticketing did not start")
            time.sleep(0.2)
        started = time.monotonic()
        while (done := asyncio.run(ticketed_count(database))) < count:
            if time.monotonic() - started > 120 + count / 50:
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        buckets = batch_histogram(port)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    messages = max(buckets.values(), default=0)
    print(f"ticketed {done} incidents in {seconds:.1f} s ({done / seconds:,.0f}/s)")
    print(f"incident.ticketed messages: {messages:.0f}, {done / max(messages, 1):.1f} events each")
    previous = 0.0
    for bound, cumulative in sorted(buckets.items()):
        print(f"  events <= {bound:g}: {cumulative - previous:.0f} messages")
        previous = cumulative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    with (
        own_vhost(RABBITMQ_URL, "probe") as amqp,
        own_database(DATABASE_URL, "probe") as database,
    ):
        probe(amqp, database, args.count)


if __name__ == "__main__":
    main()
