"""Retries, timeouts, the concurrency bound and the circuit breaker, against the fake API."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.policy import (
    CircuitBreaker,
    CircuitOpenError,
    GuardedTicketSystem,
    Permit,
    RetryPolicy,
    open_ticket,
)
from services.ticketing.tickets import TicketSystemError, fallback_ticket_id
from tests.fake_tickets import REST_PATH, FakeTicketApi, Fault
from tests.services.ticketing.conftest import new_request


def state(breaker: CircuitBreaker) -> str:
    # A call, not the property: each read is a new look at the clock.
    return breaker.state


FAST = RetryPolicy(max_attempts=3, deadline_seconds=5, backoff_seconds=0.01)


def guarded(
    api: FakeTicketApi,
    client: httpx.AsyncClient,
    *,
    retry: RetryPolicy = FAST,
    breaker: CircuitBreaker | None = None,
    max_concurrency: int = 8,
) -> GuardedTicketSystem:
    return GuardedTicketSystem(
        RestTicketSystem(client, api.url + REST_PATH, None),
        retry=retry,
        breaker=breaker or CircuitBreaker(threshold=100, reset_seconds=60),
        max_concurrency=max_concurrency,
    )


@pytest.mark.parametrize("status", [500, 503])
async def test_a_5xx_is_retried_with_the_same_idempotency_key(
    status: int, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    api.fail(Fault(status), Fault(status))
    assert await guarded(api, client).create_ticket(request) == "REST-1"
    keys = [r.headers["idempotency-key"] for r in api.requests_to(REST_PATH)]
    assert keys == [request.idempotency_key] * 3


async def test_attempts_are_bounded_then_the_fallback_id(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    api.fail(*[Fault(500)] * 5)
    assert await open_ticket(guarded(api, client), request) == (
        fallback_ticket_id(request.incident_id),
        True,
    )
    assert len(api.received) == 3


async def test_429_waits_at_least_retry_after(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    api.fail(Fault(429, retry_after=1))
    started = time.monotonic()
    assert await guarded(api, client).create_ticket(new_request()) == "REST-1"
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0
    assert len(api.received) == 2


async def test_retry_after_beyond_the_deadline_gives_up_at_once(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    api.fail(Fault(429, retry_after=30))
    started = time.monotonic()
    retry = RetryPolicy(max_attempts=3, deadline_seconds=2, backoff_seconds=0.01)
    with pytest.raises(TicketSystemError):
        await guarded(api, client, retry=retry).create_ticket(new_request())
    assert time.monotonic() - started < 1
    assert len(api.received) == 1


@pytest.mark.parametrize("status", [400, 401, 422])
async def test_other_4xx_are_not_retried(
    status: int, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    api.fail(Fault(status))
    tickets = guarded(api, client)
    assert await open_ticket(tickets, request) == (fallback_ticket_id(request.incident_id), True)
    assert len(api.received) == 1
    # The system answered: that is no reason to open the circuit.
    assert tickets.breaker.consecutive_failures == 0


async def test_a_hanging_api_times_out_to_the_fallback_id(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    api.fail(*[Fault(hang=2)] * 3)  # the client gives up after 0.5 s
    started = time.monotonic()
    assert await open_ticket(guarded(api, client), request) == (
        fallback_ticket_id(request.incident_id),
        True,
    )
    assert time.monotonic() - started < 2.5
    assert len(api.received) == 3
    assert api.tickets == []


async def test_the_deadline_bounds_a_create_whatever_the_per_request_timeout(
    api: FakeTicketApi,
) -> None:
    api.fail(Fault(hang=3))
    retry = RetryPolicy(max_attempts=3, deadline_seconds=0.5, backoff_seconds=0.01)
    async with httpx.AsyncClient(timeout=10) as slow_client:
        started = time.monotonic()
        with pytest.raises(TicketSystemError, match="no ticket within"):
            await guarded(api, slow_client, retry=retry).create_ticket(new_request())
    assert time.monotonic() - started < 1.5


async def test_an_answer_lost_after_the_create_is_retried_into_the_same_ticket(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    api.fail(Fault(hang=1.5, after_create=True))
    assert await guarded(api, client).create_ticket(request) == "REST-1"
    assert len(api.requests_to(REST_PATH)) == 2
    assert len(api.tickets_for(request.incident_id)) == 1


async def test_calls_in_flight_are_bounded(api: FakeTicketApi, client: httpx.AsyncClient) -> None:
    api.latency = 0.2
    tickets = guarded(api, client, max_concurrency=3)
    ids = await asyncio.gather(*(tickets.create_ticket(new_request()) for _ in range(9)))
    assert len(set(ids)) == 9
    assert api.max_in_flight == 3


async def test_the_bound_grows_while_the_api_answers_and_halves_when_it_is_overloaded(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    api.latency = 0.05
    tickets = guarded(api, client, max_concurrency=64)
    assert tickets.in_flight.limit == 8  # where it starts
    await asyncio.gather(*(tickets.create_ticket(new_request()) for _ in range(40)))
    grown = tickets.in_flight.limit
    assert grown > 8 and api.max_in_flight > 8
    api.fail(Fault(status=429, retry_after=0.2))
    await tickets.create_ticket(new_request())  # retried after the Retry-After
    assert tickets.in_flight.limit == grown // 2


async def test_breaker_opens_after_threshold_stops_calling_and_closes_after_reset(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    breaker = CircuitBreaker(threshold=3, reset_seconds=0.5)
    retry = RetryPolicy(max_attempts=1, deadline_seconds=5)
    tickets = guarded(api, client, retry=retry, breaker=breaker)
    api.fail(*[Fault(503)] * 3)
    for _ in range(3):
        assert (await open_ticket(tickets, new_request()))[1] is True
    assert state(breaker) == "open"
    for _ in range(10):  # fallback at once, nothing sent
        with pytest.raises(CircuitOpenError):
            await tickets.create_ticket(new_request())
    assert len(api.received) == 3
    await asyncio.sleep(0.55)
    assert state(breaker) == "half-open"
    assert await tickets.create_ticket(new_request()) == "REST-1"
    assert state(breaker) == "closed"
    assert len(api.received) == 4


async def test_no_more_retries_once_the_breaker_has_opened(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    breaker = CircuitBreaker(threshold=1, reset_seconds=60)
    tickets = guarded(api, client, breaker=breaker)
    api.fail(*[Fault(503, retry_after=0.5)] * 3)
    call = asyncio.create_task(tickets.create_ticket(new_request()))
    await asyncio.sleep(0.2)  # the first attempt failed; backing off
    permit = breaker.admit()  # meanwhile another create fails and opens the circuit
    assert permit is not None
    breaker.failed(permit)
    with pytest.raises(TicketSystemError):
        await call
    assert len(api.received) == 1


async def test_a_failed_probe_opens_the_breaker_again(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    breaker = CircuitBreaker(threshold=1, reset_seconds=0.3)
    tickets = guarded(api, client, retry=RetryPolicy(max_attempts=1), breaker=breaker)
    api.down()
    await open_ticket(tickets, new_request())
    await asyncio.sleep(0.35)
    await open_ticket(tickets, new_request())  # the probe: refused again
    assert state(breaker) == "open"
    assert (await open_ticket(tickets, new_request()))[1] is True
    api.up()
    await asyncio.sleep(0.35)
    assert (await open_ticket(tickets, new_request()))[1] is False


async def test_a_cancelled_create_is_no_failure_of_the_ticket_system(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    breaker = CircuitBreaker(threshold=2, reset_seconds=60)
    tickets = guarded(api, client, retry=RetryPolicy(max_attempts=1), breaker=breaker)
    api.fail(Fault(503), Fault(hang=2), Fault(hang=2), Fault(hang=2))
    await open_ticket(tickets, new_request())  # one real failure
    for _ in range(3):  # shutdown cancels calls in flight, three times over
        call = asyncio.create_task(open_ticket(tickets, new_request()))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    # Neither counted as failures (the circuit would be open) nor as successes (reset).
    assert state(breaker) == "closed"
    assert breaker.consecutive_failures == 1
    assert await tickets.create_ticket(new_request()) == "REST-1"


def test_breaker_half_open_lets_one_probe_through_and_a_cancelled_probe_frees_it() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        permit = breaker.admit()
        assert permit is not None
        breaker.failed(permit)
    assert state(breaker) == "open"
    assert breaker.admit() is None
    now[0] = 10.0
    assert breaker.would_admit()
    probe = breaker.admit()
    assert probe == Permit(probe=True)
    assert breaker.admit() is None  # one probe at a time
    assert not breaker.would_admit()
    breaker.abandoned(probe)  # cancelled: no verdict, still half-open
    assert state(breaker) == "half-open"
    probe = breaker.admit()
    assert probe is not None and probe.probe
    breaker.succeeded(probe)
    assert state(breaker) == "closed"
    assert breaker.admit() == Permit(probe=False)


def test_breaker_counts_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(threshold=3, reset_seconds=10)
    for outcome in ("failed", "failed", "succeeded", "failed", "failed"):
        permit = breaker.admit()
        assert permit is not None
        getattr(breaker, outcome)(permit)
    assert state(breaker) == "closed"
    assert breaker.consecutive_failures == 2
