"""The floor under every step: CPU per message through RabbitMQ, broker and client.

Publishes COUNT persistent messages with publisher confirms to a quorum queue (as every step
does), then consumes them with acks, using bare aio-pika (no FastStream) on a vhost of its
own. Reports the broker's CPU (its beam.smp process, from /proc) and this client's CPU per
message for each half. No step can cost less than these per message it receives or sends.

Then the client's CPU per event through our two publish paths, on a broker set up as every
service's is (FastStream, its Prometheus middleware, the trace context): one
``publish_event`` each (FastStream's publish), and ``publish_batch`` (one message carrying a
batch of events, as a reminder tick's requests go), batches of 500 either way.

Usage: python scripts/bench_broker.py [--count 20000] [--queue-type quorum|classic]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.events import ReminderRequested  # noqa: E402
from contracts.topology import EVENTS, NOTIFIER_REMINDER  # noqa: E402
from incidentflow.messaging import make_broker, publish_batch, publish_event  # noqa: E402
from incidentflow.metrics import instrument_messaging  # noqa: E402
from incidentflow.tracing import configure_tracing  # noqa: E402
from incidentflow_tools.sandbox import own_vhost  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
BODY = b"x" * 600  # about an event's JSON


def broker_cpu_s() -> float:
    """CPU seconds of the local RabbitMQ node so far (utime + stime of beam.smp)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(beam.smp)" in text:
            fields = text.rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise SystemExit("no local RabbitMQ (beam.smp) to measure")


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def bench(url: str, count: int, queue_type: str) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(
        "bench-broker", durable=True, arguments={"x-queue-type": queue_type}
    )
    in_flight = asyncio.Semaphore(200)

    async def publish() -> None:
        async with in_flight:
            message = aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=queue.name)

    broker0, own0, wall0 = broker_cpu_s(), own_cpu_s(), time.monotonic()
    await asyncio.gather(*(publish() for _ in range(count)))
    broker1, own1, wall1 = broker_cpu_s(), own_cpu_s(), time.monotonic()

    consumer = await connection.channel()
    await consumer.set_qos(prefetch_count=200)
    received = 0
    all_in = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received == count:
            all_in.set()

    await (await consumer.get_queue(queue.name)).consume(on_message)
    await all_in.wait()
    broker2, own2, wall2 = broker_cpu_s(), own_cpu_s(), time.monotonic()
    await connection.close()

    def per_message(seconds: float) -> str:
        return f"{seconds / count * 1e6:.0f}"

    print(f"{count} messages, {queue_type} queue, {len(BODY)} bytes, persistent")
    print(
        f"publish with confirm: broker {per_message(broker1 - broker0)} us/msg, "
        f"client {per_message(own1 - own0)} us/msg, {count / (wall1 - wall0):,.0f} msgs/s"
    )
    print(
        f"deliver and ack:      broker {per_message(broker2 - broker1)} us/msg, "
        f"client {per_message(own2 - own1)} us/msg, {count / (wall2 - wall1):,.0f} msgs/s"
    )
    total = (broker2 - broker0 + own2 - own0) / count * 1e6
    print(f"one message end to end: {total:.0f} us of CPU")


async def bench_publish_paths(url: str, count: int, batch: int = 500) -> None:
    configure_tracing("bench-broker", None)
    broker = make_broker(url, prefetch=50)
    instrument_messaging(broker, "bench-broker", exporting=False, events_in_flight=50)
    await broker.connect()
    queue = await broker.declare_queue(NOTIFIER_REMINDER.queue)
    await queue.bind(await broker.declare_exchange(EVENTS), NOTIFIER_REMINDER.routing_key)
    events = [
        ReminderRequested(
            incident_id=uuid.uuid4(),
            reminder_id=n,
            kind="follow_up",
            ticket_id="TKT-bench",
            email="customer@example.com",
            message="I was charged twice",
            created_at=datetime.now(UTC),
        )
        for n in range(count)
    ]
    for name in ("publish_event (FastStream's publish), each", "publish_batch, one message"):
        own0 = own_cpu_s()
        for start in range(0, count, batch):
            chunk = events[start : start + batch]
            if name.startswith("publish_batch"):
                await publish_batch(broker, chunk)
            else:
                await asyncio.gather(*(publish_event(broker, e) for e in chunk))
        print(f"{name}: client {(own_cpu_s() - own0) / count * 1e6:.0f} us/event")
        await queue.purge()
    await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--queue-type", choices=("quorum", "classic"), default="quorum")
    args = parser.parse_args()
    with own_vhost(RABBITMQ_URL, "bench-broker") as url:
        asyncio.run(bench(url, args.count, args.queue_type))
        asyncio.run(bench_publish_paths(url, args.count // 2))


if __name__ == "__main__":
    main()
