"""A customer's follow-ups as comments on the incident's ticket: each backend over the wire (or
in Postgres), retried through GuardedTicketSystem when retrying can help, and not otherwise."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from incidentflow.db import create_pool
from services.ticketing.adapters.jira import JiraTicketSystem
from services.ticketing.adapters.local import LocalTicketSystem
from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.adapters.zendesk import ZendeskTicketSystem
from services.ticketing.policy import (
    CircuitBreaker,
    CircuitOpenError,
    GuardedTicketSystem,
    RetryPolicy,
)
from services.ticketing.tickets import (
    CommentRequest,
    TicketRequest,
    TicketSystem,
    TicketSystemError,
    fallback_ticket_id,
)
from tests.fake_tickets import (
    REST_PATH,
    FakeTicketApi,
    Fault,
    jira_comments_path,
    rest_comments_path,
    zendesk_ticket_path,
)
from tests.services.ticketing.conftest import insert_incident, new_request

FAST = RetryPolicy(max_attempts=3, deadline_seconds=5, backoff_seconds=0.01)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def comment_for(
    request: TicketRequest,
    ticket_id: str,
    *,
    message_id: int = 41,
    channel: str = "sms",
    body: str = "Still charged twice.\nPlease call me.",
) -> CommentRequest:
    return CommentRequest(
        incident_id=request.incident_id,
        ticket_id=ticket_id,
        message_id=message_id,
        channel=channel,
        body=body,
    )


@dataclass
class Backend:
    """One HTTP backend against the fake: how to build it, where its comments go."""

    name: str
    build: Callable[[FakeTicketApi, httpx.AsyncClient], TicketSystem]
    comment_path: Callable[[str], str]
    authorization: str


BACKENDS = [
    Backend(
        "rest",
        lambda api, client: RestTicketSystem(client, api.url + REST_PATH, "s3cret"),
        rest_comments_path,
        "Bearer s3cret",
    ),
    Backend(
        "zendesk",
        lambda api, client: ZendeskTicketSystem(client, api.url, "agent@bank.example", "zd"),
        zendesk_ticket_path,
        basic("agent@bank.example/token", "zd"),
    ),
    Backend(
        "jira",
        lambda api, client: JiraTicketSystem(
            client, api.url, "ops@bank.example", "jira-token", "OPS", "Bug"
        ),
        jira_comments_path,
        basic("ops@bank.example", "jira-token"),
    ),
]


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return chosen


def guarded(system: TicketSystem, breaker: CircuitBreaker | None = None) -> GuardedTicketSystem:
    return GuardedTicketSystem(
        system,
        retry=FAST,
        breaker=breaker or CircuitBreaker(threshold=100, reset_seconds=60),
        max_concurrency=4,
    )


async def ticketed(system: TicketSystem) -> tuple[TicketRequest, str]:
    request = new_request()
    return request, await system.create_ticket(request)


# --- the request ---------------------------------------------------------------------------


def test_comment_request_is_neutralised_and_keyed_by_its_message() -> None:
    request = new_request()
    comment = comment_for(request, "REST-1", message_id=7, body="\x1b[31mred\u202e\tok\nnext")
    assert comment.body == "\ufffd[31mred\tok\nnext"
    assert comment.idempotency_key == f"incident-{request.incident_id}-message-7"
    assert comment.text == "Customer wrote again (sms):\n\n\ufffd[31mred\tok\nnext"


# --- each HTTP backend over the wire -------------------------------------------------------


async def test_rest_comment_path_body_auth_and_key(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request, ticket_id = await ticketed(BACKENDS[0].build(api, client))
    comment = comment_for(request, ticket_id, channel="email")
    # Configured as the collection with a trailing slash: no double slash before the id.
    tickets = RestTicketSystem(client, api.url + REST_PATH + "/", "s3cret")
    await tickets.add_comment(comment)
    [arrived] = api.requests_to(rest_comments_path(ticket_id))
    assert arrived.path == "/api/tickets/REST-1/comments"
    assert arrived.method == "POST"
    assert arrived.headers["authorization"] == "Bearer s3cret"
    assert arrived.headers["idempotency-key"] == comment.idempotency_key
    assert arrived.json() == {
        "incident_id": str(request.incident_id),
        "message_id": 41,
        "channel": "email",
        "body": "Customer wrote again (email):\n\nStill charged twice.\nPlease call me.",
    }
    assert [c.body["message_id"] for c in api.comments_on(ticket_id)] == [41]


async def test_zendesk_comment_is_an_internal_note_added_by_updating_the_ticket(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = BACKENDS[1].build(api, client)
    request, ticket_id = await ticketed(tickets)
    comment = comment_for(request, ticket_id, channel="whatsapp")
    await tickets.add_comment(comment)
    [arrived] = api.requests_to(zendesk_ticket_path(ticket_id))
    assert (arrived.method, arrived.path) == ("PUT", "/api/v2/tickets/1001.json")
    assert arrived.headers["authorization"] == basic("agent@bank.example/token", "zd")
    assert arrived.headers["idempotency-key"] == comment.idempotency_key
    assert arrived.json() == {
        "ticket": {
            "comment": {
                "body": "Customer wrote again (whatsapp):\n\nStill charged twice.\nPlease call me.",
                "public": False,
            }
        }
    }
    assert len(api.comments_on(ticket_id)) == 1


async def test_jira_comment_is_v3_atlassian_document_format(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = BACKENDS[2].build(api, client)
    request, ticket_id = await ticketed(tickets)
    await tickets.add_comment(comment_for(request, ticket_id))
    [arrived] = api.requests_to(jira_comments_path(ticket_id))
    assert (arrived.method, arrived.path) == ("POST", "/rest/api/3/issue/OPS-1/comment")
    assert arrived.headers["authorization"] == basic("ops@bank.example", "jira-token")

    def text(value: str) -> dict[str, str]:
        return {"type": "text", "text": value}

    assert arrived.json() == {
        "body": {
            "type": "doc",
            "version": 1,
            "content": [
                {"type": "paragraph", "content": [text("Customer wrote again (sms):")]},
                {
                    "type": "paragraph",
                    "content": [
                        text("Still charged twice."),
                        {"type": "hardBreak"},
                        text("Please call me."),
                    ],
                },
            ],
        }
    }
    assert len(api.comments_on(ticket_id)) == 1


async def test_a_ticket_id_stays_one_path_segment(
    backend: Backend, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = backend.build(api, client)
    request, _ = await ticketed(tickets)
    with pytest.raises(TicketSystemError) as failure:
        await tickets.add_comment(comment_for(request, "../1001"))
    assert not failure.value.retryable  # the fake's 404: no ticket has that id
    [arrived] = api.received[-1:]
    assert arrived.path == backend.comment_path("../1001")
    assert "%2F" in arrived.path
    assert api.comments == []


# --- retried, or not -----------------------------------------------------------------------


async def test_a_503_then_success_is_retried_into_one_comment(
    backend: Backend, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = guarded(backend.build(api, client))
    request, ticket_id = await ticketed(tickets)
    comment = comment_for(request, ticket_id)
    api.fail(Fault(503))
    await tickets.add_comment(comment)
    attempts = api.requests_to(backend.comment_path(ticket_id))
    assert len(attempts) == 2
    assert attempts[0].body == attempts[1].body
    assert all(a.headers["authorization"] == backend.authorization for a in attempts)
    assert len(api.comments_on(ticket_id)) == 1


async def test_a_400_is_not_retried(
    backend: Backend, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = guarded(backend.build(api, client))
    request, ticket_id = await ticketed(tickets)
    api.fail(Fault(400))
    with pytest.raises(TicketSystemError) as failure:
        await tickets.add_comment(comment_for(request, ticket_id))
    assert failure.value.retryable is False
    assert len(api.requests_to(backend.comment_path(ticket_id))) == 1
    assert api.comments_on(ticket_id) == []
    # The system answered: no reason to open the circuit.
    assert tickets.breaker.consecutive_failures == 0


async def test_failures_say_whether_a_retry_can_help(
    backend: Backend, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = backend.build(api, client)
    request, ticket_id = await ticketed(tickets)
    api.fail(Fault(502), Fault(429, retry_after=3), Fault(401), Fault(422))
    verdicts = []
    for _ in range(4):
        with pytest.raises(TicketSystemError) as failure:
            await tickets.add_comment(comment_for(request, ticket_id))
        verdicts.append((failure.value.retryable, failure.value.retry_after))
    assert verdicts == [(True, None), (True, 3.0), (False, None), (False, None)]
    # A ticket the system does not know: its 404 is a refusal.
    with pytest.raises(TicketSystemError) as unknown:
        await tickets.add_comment(comment_for(request, "404404"))
    assert not unknown.value.retryable
    api.down()
    with pytest.raises(TicketSystemError) as down:
        await tickets.add_comment(comment_for(request, ticket_id))
    assert down.value.retryable
    assert api.comments == []


async def test_rest_answer_lost_after_the_comment_is_retried_without_a_second_one(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    tickets = guarded(BACKENDS[0].build(api, client))
    request, ticket_id = await ticketed(tickets)
    api.fail(Fault(503, after_create=True))
    await tickets.add_comment(comment_for(request, ticket_id))
    assert len(api.requests_to(rest_comments_path(ticket_id))) == 2
    # The same Idempotency-Key: the API answered the first comment again.
    assert len(api.comments_on(ticket_id)) == 1


async def test_failing_comments_open_the_circuit_creates_share(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    breaker = CircuitBreaker(threshold=2, reset_seconds=60)
    tickets = guarded(BACKENDS[0].build(api, client), breaker)
    request, ticket_id = await ticketed(tickets)
    api.fail(*[Fault(500)] * 6)
    for _ in range(2):
        with pytest.raises(TicketSystemError):
            await tickets.add_comment(comment_for(request, ticket_id))
    assert breaker.state == "open"
    calls = len(api.received)
    with pytest.raises(CircuitOpenError):
        await tickets.add_comment(comment_for(request, ticket_id))
    with pytest.raises(CircuitOpenError):
        await tickets.create_ticket(new_request())
    assert len(api.received) == calls  # neither reached the API


# --- local tickets in Postgres -------------------------------------------------------------


async def test_local_comment_is_stored_once_per_message(db: asyncpg.Pool) -> None:
    request = new_request()
    await insert_incident(db, request)
    tickets = LocalTicketSystem(lambda: db)
    ticket_id = await tickets.create_ticket(request)
    first = comment_for(request, ticket_id, message_id=41, body="again\x1b[2J")
    # A redelivery, also concurrent with itself: one row.
    await tickets.add_comment(first)
    await asyncio.gather(*(tickets.add_comment(first) for _ in range(4)))
    await tickets.add_comment(comment_for(request, ticket_id, message_id=42, channel="email"))
    rows = await db.fetch(
        "SELECT ticket_id, incident_id, message_id, channel, body, created_at"
        " FROM local_ticket_comments WHERE incident_id = $1 ORDER BY message_id",
        request.incident_id,
    )
    assert [(r["ticket_id"], r["message_id"], r["channel"]) for r in rows] == [
        (ticket_id, 41, "sms"),
        (ticket_id, 42, "email"),
    ]
    assert rows[0]["body"] == "again\ufffd[2J"
    assert rows[0]["created_at"] is not None


async def test_local_comment_on_a_ticket_it_does_not_have_is_refused(db: asyncpg.Pool) -> None:
    request = new_request()
    await insert_incident(db, request, fallback=True)
    tickets = LocalTicketSystem(lambda: db)
    with pytest.raises(TicketSystemError) as failure:
        await tickets.add_comment(comment_for(request, fallback_ticket_id(request.incident_id)))
    assert not failure.value.retryable
    assert await db.fetchval("SELECT count(*) FROM local_ticket_comments") == 0


async def test_local_database_away_is_a_retryable_failure(
    db: asyncpg.Pool, ticketing_database: str
) -> None:
    request = new_request()
    await insert_incident(db, request)
    ticket_id = await LocalTicketSystem(lambda: db).create_ticket(request)
    closed = await create_pool(ticketing_database, 1)
    await closed.close()
    with pytest.raises(TicketSystemError) as failure:
        await LocalTicketSystem(lambda: closed).add_comment(comment_for(request, ticket_id))
    assert failure.value.retryable
    # Through the policy once the database is back: the comment is added.
    await guarded(LocalTicketSystem(lambda: db)).add_comment(comment_for(request, ticket_id))
    assert await db.fetchval("SELECT count(*) FROM local_ticket_comments") == 1
