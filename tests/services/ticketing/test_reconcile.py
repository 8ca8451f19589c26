"""Reconciliation against a real Postgres and the fake API: fallback ids become real tickets,
exactly once, audited, also with two replicas at it."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx
import pytest

from contracts.events import derived_event_id
from services.ticketing.adapters.local import LocalTicketSystem
from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.policy import CircuitBreaker, GuardedTicketSystem, RetryPolicy
from services.ticketing.reconcile import Reconciler
from services.ticketing.tickets import TicketRequest, TicketSystem, fallback_ticket_id
from tests.fake_tickets import REST_PATH, FakeTicketApi, Fault
from tests.services.ticketing.conftest import insert_incident, new_request


def reconciler(
    db: asyncpg.Pool,
    system: TicketSystem,
    *,
    breaker: CircuitBreaker | None = None,
    interval: float = 60,
) -> Reconciler:
    breaker = breaker or CircuitBreaker(threshold=5, reset_seconds=60)
    tickets = GuardedTicketSystem(
        system,
        retry=RetryPolicy(max_attempts=1, deadline_seconds=2),
        breaker=breaker,
        max_concurrency=4,
    )
    return Reconciler(
        "ticketing",
        lambda: db,
        tickets,
        breaker,
        interval_seconds=interval,
        lease_seconds=30,
        batch_size=5,
    )


def rest(api: FakeTicketApi, client: httpx.AsyncClient) -> RestTicketSystem:
    return RestTicketSystem(client, api.url + REST_PATH, None)


async def fallbacks(db: asyncpg.Pool, *requests: TicketRequest) -> None:
    for request in requests:
        await insert_incident(db, request, fallback=True)


async def state(db: asyncpg.Pool, request: TicketRequest) -> tuple[str, bool]:
    row = await db.fetchrow(
        "SELECT ticket_id, ticket_fallback FROM incidents WHERE id = $1", request.incident_id
    )
    assert row is not None
    return row["ticket_id"], row["ticket_fallback"]


async def audit(db: asyncpg.Pool, request: TicketRequest) -> list[asyncpg.Record]:
    return await db.fetch(  # type: ignore[no-any-return]
        """
        SELECT event_id, payload, service FROM audit_events
        WHERE incident_id = $1 AND event_name = 'ticket.reconciled'
        """,
        request.incident_id,
    )


async def test_fallbacks_get_one_real_ticket_each_and_an_audit_row(
    db: asyncpg.Pool, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    requests = [new_request() for _ in range(12)]  # more than one batch of 5
    await fallbacks(db, *requests)
    await insert_incident(db, new_request())  # not ticketed yet: not touched
    loop = reconciler(db, rest(api, client))
    assert [await loop.reconcile_once() for _ in range(4)] == [5, 5, 2, 0]
    for request in requests:
        [ticket] = api.tickets_for(request.incident_id)
        assert await state(db, request) == (ticket.id, False)
        [row] = await audit(db, request)
        assert row["service"] == "ticketing"
        assert row["event_id"] == derived_event_id(request.incident_id, "ticket-reconciled")
        assert row["payload"] == {
            "fallback_ticket_id": fallback_ticket_id(request.incident_id),
            "ticket_id": ticket.id,
        }
        # The create carried the incident's idempotency key, as the first try did.
        [arrived] = [r for r in api.requests_to(REST_PATH) if ticket.body == r.json()]
        assert arrived.headers["idempotency-key"] == request.idempotency_key
    assert len(api.received) == 12


async def test_two_replicas_reconcile_each_incident_once(
    db: asyncpg.Pool, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    requests = [new_request() for _ in range(10)]
    await fallbacks(db, *requests)
    api.latency = 0.05
    one, other = reconciler(db, rest(api, client)), reconciler(db, rest(api, client))
    for _ in range(3):
        await asyncio.gather(one.reconcile_once(), other.reconcile_once())
    # Each claimed by one replica only: one call per incident, not one per replica.
    assert len(api.requests_to(REST_PATH)) == 10
    for request in requests:
        assert len(await audit(db, request)) == 1
        assert (await state(db, request))[1] is False


async def test_a_still_failing_api_leaves_the_fallback_and_releases_the_claim(
    db: asyncpg.Pool, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    await fallbacks(db, request)
    loop = reconciler(db, rest(api, client))
    api.fail(Fault(503))
    assert await loop.reconcile_once() == 0
    assert await state(db, request) == (fallback_ticket_id(request.incident_id), True)
    assert await audit(db, request) == []
    # Released, not leased for 30 s: the next round tries again.
    assert await loop.reconcile_once() == 1
    assert (await state(db, request))[1] is False


async def test_no_calls_while_the_breaker_is_open(
    db: asyncpg.Pool, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    await fallbacks(db, new_request(), new_request())
    breaker = CircuitBreaker(threshold=1, reset_seconds=60)
    permit = breaker.admit()
    assert permit is not None
    breaker.failed(permit)
    assert await reconciler(db, rest(api, client), breaker=breaker).reconcile_once() == 0
    assert api.received == []


async def test_after_an_outage_one_probe_goes_first(
    db: asyncpg.Pool, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    await fallbacks(db, *[new_request() for _ in range(5)])
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_seconds=10, clock=lambda: now[0])
    permit = breaker.admit()
    assert permit is not None
    breaker.failed(permit)
    now[0] = 11.0  # half-open
    api.down(reset=True)
    loop = reconciler(db, rest(api, client), breaker=breaker)
    assert await loop.reconcile_once() == 0
    assert api.dropped == 1  # the probe failed: the other four were not tried
    assert not breaker.would_admit()
    api.up()
    now[0] = 22.0
    # All five released at once, not held for the 30 s lease.
    assert await loop.reconcile_once() == 5


async def test_local_backend_reconciles_leftover_fallbacks(db: asyncpg.Pool) -> None:
    request = new_request()
    await fallbacks(db, request)
    assert await reconciler(db, LocalTicketSystem(lambda: db)).reconcile_once() == 1
    ticket_id, fallback = await state(db, request)
    assert ticket_id.startswith("LOC-") and fallback is False


async def test_the_loop_survives_a_failing_round_and_stops_when_cancelled(
    db: asyncpg.Pool,
    api: FakeTicketApi,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = new_request()
    await fallbacks(db, request)
    rounds = [0]

    def flaky_pool() -> asyncpg.Pool:
        rounds[0] += 1
        if rounds[0] == 1:
            raise OSError("database away")
        return db

    breaker = CircuitBreaker(threshold=5, reset_seconds=60)
    loop = Reconciler(
        "ticketing",
        flaky_pool,
        GuardedTicketSystem(
            rest(api, client), retry=RetryPolicy(), breaker=breaker, max_concurrency=2
        ),
        breaker,
        interval_seconds=0.1,
        lease_seconds=30,
    )
    with caplog.at_level(logging.ERROR, logger="incidentflow.ticketing"):
        await loop.start()
        for _ in range(50):
            if (await state(db, request))[1] is False:
                break
            await asyncio.sleep(0.1)
        await loop.stop()
    assert (await state(db, request))[1] is False
    assert "ticket reconciliation failed" in caplog.text
    assert "ticket reconciliation stopped" not in caplog.text  # cancelled is a clean end
