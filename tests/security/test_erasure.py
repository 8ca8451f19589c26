"""A customer's erasure request leaves nothing of their address or words in any column of any
table: incidents run through the whole system, then `incidentflow erase --customer ID`, then
every text, varchar and jsonb column of every table is searched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import aio_pika
import asyncpg
import httpx
from aio_pika.abc import FieldValue

from contracts.events import IncidentReceived
from contracts.topology import CLASSIFIER_SCORED, DEAD_LETTERS, SENTIMENT_RECEIVED
from incidentflow.batched_events import BATCH_HEADER, decode_batch, encode_batch
from incidentflow.dlq import DEAD_LETTER_ROUTES
from incidentflow.messaging import ERROR_HEADER
from incidentflow_tools.stack import Stack
from tests.e2e.conftest import insert_ticketed_incident, wait_until
from tests.security.conftest import REPO_ROOT, Servers


async def columns_holding(conn: asyncpg.Connection, needles: list[str]) -> list[str]:
    """``table.column`` of every text-like column where a needle occurs (any case)."""
    found: list[str] = []
    columns = await conn.fetch(
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public'
          AND data_type IN ('text', 'character varying', 'character', 'jsonb', 'json')
        """
    )
    for column in columns:
        table, name = column["table_name"], column["column_name"]
        for needle in needles:
            hits = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE "{name}"::text ILIKE $1',
                f"%{needle}%",
            )
            if hits:
                found.append(f"{table}.{name}")
    return found


async def test_erase_leaves_no_address_or_message_in_any_column(
    security_stack: Stack, security_database_url: str
) -> None:
    marker = uuid.uuid4().hex[:10]
    customer = f"erase-{marker}"
    address = f"person-{marker}@example.com"
    phrase = f"gazebo{marker}"
    phone = "+14155550123"
    ids = []
    for text in (f"I was charged twice for my {phrase} order", f"Still waiting on {phrase}!"):
        answer = httpx.post(
            security_stack.url("ingest") + "/api/incidents",
            json={
                "customer_id": customer,
                "channel": "sms",
                "email": address,
                "phone": phone,
                "message": text,
            },
            headers={"Prefer": "wait=0"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["incident_id"])

    def acknowledged() -> bool:
        states = [
            httpx.get(f"{security_stack.url('ingest')}/api/incidents/{i}", timeout=10).json()
            for i in ids
        ]
        return all(s.get("acknowledged_at") for s in states)

    wait_until(acknowledged, timeout=120)
    conn = await asyncpg.connect(security_database_url)
    try:
        # The data was there: the search finds it before the erasure.
        assert "incidents.message" in await columns_holding(conn, [phrase])
        erased = subprocess.run(
            [sys.executable, "-m", "incidentflow_tools.cli", "erase", "--customer", customer],
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": security_database_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert erased.returncode == 0, erased.stderr
        assert erased.stdout.strip().endswith("erased the personal data of 2 incidents")
        assert await columns_holding(conn, [address, phrase, phone.lstrip("+")]) == []
        # Each table the erasure reaches, checked directly too: the search above only finds
        # what was there, and the default acknowledgement quotes nothing.
        notifications = await conn.fetch(
            "SELECT message, recipient, recipient_key FROM notifications"
            " WHERE incident_id = ANY($1::uuid[])",
            ids,
        )
        assert notifications and all(
            (n["message"], n["recipient"], n["recipient_key"]) == ("[erased]", "[erased]", None)
            for n in notifications
        )
        erased_at = await conn.fetch(
            "SELECT erased_at FROM incidents WHERE id = ANY($1::uuid[])", ids
        )
        assert all(row["erased_at"] is not None for row in erased_at)
        recorded = await conn.fetchrow(
            "SELECT customer_sha256, incidents FROM erasures ORDER BY id DESC LIMIT 1"
        )
        assert recorded["incidents"] == 2 and customer not in recorded["customer_sha256"]
        # What the system did stays: the incidents, their categories and their audit trail.
        kept = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE customer_id = $1 AND classification IS NOT NULL",
            customer,
        )
        assert kept == 2
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_events WHERE incident_id = ANY($1::uuid[])", ids
            )
            >= 8
        )
    finally:
        await conn.close()


async def test_incidents_resolved_before_the_retention_period_lose_their_personal_data(
    security_database_url: str,
) -> None:
    marker = uuid.uuid4().hex[:10]
    old, recent, still_open = [
        await insert_ticketed_incident(
            security_database_url,
            customer_id=f"retention-{marker}",
            email=f"{name}-{marker}@example.com",
            message=f"{name} {marker}",
        )
        for name in ("old", "recent", "open")
    ]
    conn = await asyncpg.connect(security_database_url)
    try:
        for event, days_ago in ((old, 400), (recent, 10)):
            await conn.execute(
                """
                UPDATE incidents SET status = 'resolved',
                       resolved_at = now() - $2 * interval '1 day'
                WHERE id = $1
                """,
                event.incident_id,
                days_ago,
            )
        erased = subprocess.run(
            [sys.executable, "-m", "incidentflow_tools.cli", "erase", "--expired"],
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": security_database_url, "RETENTION_DAYS": "365"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert erased.returncode == 0, erased.stderr
        left = {
            row["id"]: row["message"]
            for row in await conn.fetch(
                "SELECT id, message FROM incidents WHERE customer_id = $1",
                f"retention-{marker}",
            )
        }
        assert left == {
            old.incident_id: "[erased]",
            recent.incident_id: f"recent {marker}",
            still_open.incident_id: f"open {marker}",
        }
        assert await columns_holding(conn, [f"old-{marker}", f"old {marker}"]) == []
    finally:
        await conn.close()


def received(customer: str, marker: str) -> IncidentReceived:
    return IncidentReceived(
        incident_id=uuid.uuid4(),
        customer_id=customer,
        channel="email",
        message=f"my card was charged twice {marker}",
        email=f"{marker}@example.com",
        created_at=datetime.now(UTC),
    )


async def dead_letters(broker_url: str) -> list[tuple[str, bytes, dict[str, FieldValue]]]:
    """(queue, body, headers) of every message in every dead-letter queue, left in place."""
    found: list[tuple[str, bytes, dict[str, FieldValue]]] = []
    async with await aio_pika.connect(broker_url) as connection:
        for name in DEAD_LETTER_ROUTES:
            channel = await connection.channel()
            queue = await channel.get_queue(name, ensure=False)
            held = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                held.append(message)
                found.append((name, message.body, dict(message.headers or {})))
            if held:
                await held[-1].nack(multiple=True, requeue=True)
            await channel.close()
    return found


async def test_erase_masks_the_customers_dead_letters_and_keeps_everyone_elses(
    servers: Servers,
) -> None:
    """One of the customer's events alone, one in a batch beside another customer's, and
    another customer's alone, in dead-letter queues; after the erasure none holds the
    customer's address or words, the others are as they were, and nothing is lost."""
    marker, other = f"dlq{uuid.uuid4().hex[:10]}", f"keep{uuid.uuid4().hex[:10]}"
    customer = f"erase-{marker}"
    theirs, in_batch, others = (
        received(customer, marker),
        received(customer, marker),
        received("someone-else", other),
    )
    error: dict[str, FieldValue] = {ERROR_HEADER: "validation failed"}
    async with await aio_pika.connect(servers.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.get_exchange(DEAD_LETTERS.name, ensure=False)
        for body, headers, route in (
            (theirs.model_dump_json().encode(), error, SENTIMENT_RECEIVED),
            (
                encode_batch([(in_batch, {}), (others, {})]),
                {BATCH_HEADER: 2, **error},
                SENTIMENT_RECEIVED,
            ),
            (others.model_dump_json().encode(), error, CLASSIFIER_SCORED),
        ):
            await dlx.publish(aio_pika.Message(body, headers=headers), routing_key=route.queue_name)
    before = await dead_letters(servers.rabbitmq_url)

    erased = subprocess.run(
        [sys.executable, "-m", "incidentflow_tools.cli", "erase", "--customer", customer],
        env={
            **os.environ,
            "DATABASE_URL": servers.database_url,
            "RABBITMQ_URL": servers.rabbitmq_url,
        },
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert erased.returncode == 0, erased.stderr
    assert "masked 2 dead letters" in erased.stdout

    after = await dead_letters(servers.rabbitmq_url)
    assert sorted(queue for queue, _, _ in after) == sorted(queue for queue, _, _ in before)
    for needle in (f"{marker}@example.com", f"twice {marker}"):
        assert not [body for _, body, _ in after if needle.encode() in body]
        assert [body for _, body, _ in before if needle.encode() in body]  # the control
    # The other customer's event is kept whole, alone and in the batch.
    assert sum(other.encode() in body for _, body, _ in after) == 2
    assert all(headers.get(ERROR_HEADER) == "validation failed" for _, _, headers in after)
    masked = [
        json.loads(part.body)
        for _, body, headers in after
        if BATCH_HEADER in headers
        for part in decode_batch(body)
    ]
    assert {event["customer_id"] for event in masked} == {customer, "someone-else"}
    (erased_event,) = [event for event in masked if event["customer_id"] == customer]
    assert (erased_event["email"], erased_event["message"]) == ("[erased]", "[erased]")
