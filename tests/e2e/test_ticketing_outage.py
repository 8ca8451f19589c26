"""The ticket API is down for 30 s during a burst of 200 incidents. Every incident is still
acknowledged within its wait window (201, not 202) with a fallback id TKT-xxxxxxxx, and after
recovery each has exactly one real ticket.

A stack of its own (vhost, database, ports) against the fake ticket API in this process; the
API is "down" by accepting and dropping every connection, so the calls it got are counted.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from contracts.events import IncidentClassified
from incidentflow_tools.sandbox import own_database
from incidentflow_tools.stack import Stack
from services.ticketing.tickets import fallback_ticket_id
from tests.e2e.conftest import audited_event, publish, running_stack
from tests.fake_tickets import REST_PATH, FakeTicketApi, fake_ticket_api

BURST = 200
CONCURRENCY = 20
OUTAGE_SECONDS = 30.0
WAIT_SECONDS = 20  # CI machines are about twice as slow as a developer's
RECONCILE_TIMEOUT = 120.0


@pytest.fixture
def outage_database(database_url: str) -> Iterator[str]:
    with own_database(database_url, "outage") as url:
        yield url


@pytest.fixture
def api() -> Iterator[FakeTicketApi]:
    with fake_ticket_api() as server:
        yield server


@pytest.fixture
def outage_stack(
    isolated_rabbitmq_url: str, outage_database: str, api: FakeTicketApi, tmp_path: Path
) -> Iterator[Stack]:
    env = {
        "RABBITMQ_URL": isolated_rabbitmq_url,
        "DATABASE_URL": outage_database,
        "INGEST_WAIT_SECONDS": str(WAIT_SECONDS),
        "TICKETING_BACKEND": "rest",
        "TICKETING_URL": api.url + REST_PATH,
        "TICKETING_TOKEN": "outage-token",
    }
    with running_stack(tmp_path, env) as stack:
        yield stack


async def submit_burst(stack: Stack) -> list[tuple[int, dict[str, Any], float]]:
    """BURST incidents, CONCURRENCY at a time: (status, body, seconds to answer) each."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(http: httpx.AsyncClient, number: int) -> tuple[int, dict[str, Any], float]:
        async with slots:
            started = time.monotonic()
            response = await http.post(
                stack.url("ingest") + "/api/incidents",
                json={
                    "customer_id": str(10000 + number),
                    "channel": "email",
                    "message": f"I was charged twice for order {number}, please refund one",
                    "email": f"customer{number}@example.com",
                },
            )
            return response.status_code, response.json(), time.monotonic() - started

    async with httpx.AsyncClient(timeout=WAIT_SECONDS + 30) as http:
        return await asyncio.gather(*(one(http, n) for n in range(BURST)))


async def incident_rows(database_url: str, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(  # type: ignore[no-any-return]
            """
            SELECT i.id, i.ticket_id, i.ticket_fallback,
                   (SELECT count(*) FROM audit_events a
                    WHERE a.incident_id = i.id AND a.service = 'ticketing'
                      AND a.event_name = 'ticket.reconciled') AS reconciled,
                   (SELECT a.payload::text FROM audit_events a
                    WHERE a.incident_id = i.id AND a.service = 'ticketing'
                      AND a.event_name = 'ticket.reconciled') AS payload
            FROM incidents i WHERE i.id = ANY($1::uuid[])
            """,
            ids,
        )
    finally:
        await conn.close()


async def classified_event(database_url: str, incident_id: uuid.UUID) -> IncidentClassified:
    conn = await asyncpg.connect(database_url)
    try:
        payload = await conn.fetchval(
            """
            SELECT payload::text FROM audit_events
            WHERE incident_id = $1 AND service = 'ticketing'
              AND event_name = 'incident.classified'
            """,
            incident_id,
        )
        return await audited_event(conn, IncidentClassified, payload)
    finally:
        await conn.close()


async def test_ticket_api_outage_during_a_burst(
    outage_stack: Stack, api: FakeTicketApi, outage_database: str, isolated_rabbitmq_url: str
) -> None:
    api.down(reset=True)
    outage_started = time.monotonic()
    answers = await submit_burst(outage_stack)
    burst_seconds = time.monotonic() - outage_started
    # Down for the whole burst and at least OUTAGE_SECONDS, whichever is longer.
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
    dead_calls = api.dropped
    api.up()
    recovered = time.monotonic()

    statuses = [status for status, _, _ in answers]
    assert statuses == [201] * BURST, {s: statuses.count(s) for s in set(statuses)}
    ids = [uuid.UUID(body["incident_id"]) for _, body, _ in answers]
    for incident_id, (_, body, _) in zip(ids, answers, strict=True):
        assert re.fullmatch(r"TKT-[0-9a-f]{8}", body["ticket_id"]), body
        assert body["ticket_id"] == fallback_ticket_id(incident_id)
    slowest_ack = max(seconds for _, _, seconds in answers)

    deadline = recovered + RECONCILE_TIMEOUT
    while True:
        rows = await incident_rows(outage_database, ids)
        if all(row["ticket_fallback"] is False for row in rows):
            break
        pending = sum(row["ticket_fallback"] is not False for row in rows)
        assert time.monotonic() < deadline, f"{pending} incidents still on a fallback id"
        await asyncio.sleep(0.5)
    reconciled_after = time.monotonic() - recovered

    assert len(rows) == BURST
    tickets = {row["id"]: row["ticket_id"] for row in rows}
    for row in rows:
        [ticket] = api.tickets_for(row["id"])  # exactly one real ticket per incident
        assert row["ticket_id"] == ticket.id
        assert row["reconciled"] == 1
        assert f'"ticket_id": "{ticket.id}"' in row["payload"]
        assert f'"fallback_ticket_id": "{fallback_ticket_id(row["id"])}"' in row["payload"]
    assert {r.headers["authorization"] for r in api.requests_to(REST_PATH)} == {
        "Bearer outage-token"
    }

    # A late redelivery of the classified event opens no second ticket.
    again = await classified_event(outage_database, ids[0])
    await publish(isolated_rabbitmq_url, again)
    await asyncio.sleep(3)
    assert len(api.tickets_for(ids[0])) == 1
    assert (await incident_rows(outage_database, ids[:1]))[0]["ticket_id"] == tickets[ids[0]]

    print(
        f"\nticket API outage: burst of {BURST} in {burst_seconds:.1f} s, "
        f"slowest ack {slowest_ack:.2f} s (window {WAIT_SECONDS} s), "
        f"{dead_calls} calls reached the dead API in {OUTAGE_SECONDS:.0f}+ s, "
        f"all reconciled {reconciled_after:.1f} s after recovery "
        f"({len(api.requests_to(REST_PATH))} creates after recovery)"
    )
