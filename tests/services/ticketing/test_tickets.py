"""The generic REST backend over the wire, and the fallback id."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from services.ticketing.adapters.http import parse_retry_after
from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.policy import open_ticket
from services.ticketing.tickets import TicketSystemError, fallback_ticket_id
from tests.fake_tickets import REST_PATH, FakeTicketApi, Fault, fake_ticket_api
from tests.services.ticketing.conftest import new_request


def test_fallback_id_is_tkt_and_8_hex_and_stable() -> None:
    incident = uuid.uuid4()
    assert re.fullmatch(r"TKT-[0-9a-f]{8}", fallback_ticket_id(incident))
    assert fallback_ticket_id(incident) == fallback_ticket_id(incident)
    assert fallback_ticket_id(incident) != fallback_ticket_id(uuid.uuid4())


async def test_rest_ticket_is_created_with_bearer_and_idempotency_key(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    tickets = RestTicketSystem(client, api.url + REST_PATH, "s3cret")
    assert await tickets.create_ticket(request) == "REST-1"
    [arrived] = api.requests_to(REST_PATH)
    assert arrived.headers["authorization"] == "Bearer s3cret"
    assert arrived.headers["idempotency-key"] == f"incident-{request.incident_id}"
    assert arrived.json() == {
        "incident_id": str(request.incident_id),
        "category": "duplicate_payment",
        "message": "I was charged twice",
        "customer_id": "99876",
        "sentiment": "negative",
        "language": "en",
    }


@pytest.mark.parametrize("field", ["id", "ticket_id", "key"])
async def test_rest_reads_the_id_from_any_seed_compatible_field(
    field: str, client: httpx.AsyncClient
) -> None:
    with fake_ticket_api(rest_id_field=field) as api:
        tickets = RestTicketSystem(client, api.url + REST_PATH, None)
        assert await tickets.create_ticket(new_request()) == "REST-1"
        assert "authorization" not in api.received[0].headers


async def test_rest_redelivered_create_gets_the_same_ticket(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    tickets = RestTicketSystem(client, api.url + REST_PATH, None)
    first = await tickets.create_ticket(request)
    assert await tickets.create_ticket(request) == first
    assert len(api.requests_to(REST_PATH)) == 2
    assert [t.id for t in api.tickets_for(request.incident_id)] == [first]


async def test_rest_failures_say_whether_a_retry_can_help(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = RestTicketSystem(client, api.url + REST_PATH, None)
    api.fail(Fault(503), Fault(429, retry_after=7), Fault(400), Fault(404))
    verdicts = []
    for _ in range(4):
        with pytest.raises(TicketSystemError) as failure:
            await tickets.create_ticket(new_request())
        verdicts.append((failure.value.retryable, failure.value.retry_after))
    assert verdicts == [(True, None), (True, 7.0), (False, None), (False, None)]


async def test_rest_answer_without_an_id_is_a_refusal(client: httpx.AsyncClient) -> None:
    with fake_ticket_api(rest_id_field="number") as api:
        tickets = RestTicketSystem(client, api.url + REST_PATH, None)
        with pytest.raises(TicketSystemError) as failure:
            await tickets.create_ticket(new_request())
    assert not failure.value.retryable


async def test_rest_down_is_a_retryable_failure_and_gives_the_fallback_id(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = RestTicketSystem(client, api.url + REST_PATH, None)
    request = new_request()
    api.down()
    with pytest.raises(TicketSystemError) as failure:
        await tickets.create_ticket(request)
    assert failure.value.retryable
    assert await open_ticket(tickets, request) == (fallback_ticket_id(request.incident_id), True)
    api.up()
    assert await open_ticket(tickets, request) == ("REST-1", False)


def test_retry_after_seconds_are_read_and_capped() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("86400") == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None
