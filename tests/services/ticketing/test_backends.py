"""Zendesk, Jira and local backends: request shape and auth over the wire, one ticket each."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from services.ticketing.adapters.jira import JiraTicketSystem
from services.ticketing.adapters.local import LocalTicketSystem
from services.ticketing.adapters.zendesk import ZendeskTicketSystem, zendesk_priority
from services.ticketing.app import ticket_system
from services.ticketing.settings import TicketingSettings
from tests.fake_tickets import (
    JIRA_ISSUE_PATH,
    JIRA_SEARCH_PATH,
    REST_PATH,
    ZENDESK_PATH,
    FakeTicketApi,
)
from tests.services.ticketing.conftest import insert_incident, new_request


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_zendesk_ticket_shape_auth_and_idempotency(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request(category="fraud_report", sentiment="neutral", language="pt")
    tickets = ZendeskTicketSystem(client, api.url, "agent@bank.example", "zd-token")
    ticket_id = await tickets.create_ticket(request)
    assert ticket_id == "1001"
    [arrived] = api.requests_to(ZENDESK_PATH)
    assert arrived.headers["authorization"] == basic("agent@bank.example/token", "zd-token")
    assert arrived.headers["idempotency-key"] == request.idempotency_key
    ticket = arrived.json()["ticket"]
    assert ticket["tags"] == ["fraud_report", "sentiment_neutral", "language_pt", "incidentflow"]
    assert "Language: pt" in ticket["comment"]["body"]
    assert ticket["priority"] == "urgent"
    assert ticket["external_id"] == request.idempotency_key
    assert str(request.incident_id) in ticket["subject"]
    assert ticket["comment"]["body"].startswith("I was charged twice")
    # Redelivered: the same key answers the first ticket, no second one.
    assert await tickets.create_ticket(request) == ticket_id
    assert len(api.requests_to(ZENDESK_PATH)) == 2
    assert len(api.tickets_for(request.incident_id)) == 1


@pytest.mark.parametrize(
    ("category", "sentiment", "priority"),
    [
        ("fraud_report", "positive", "urgent"),
        ("duplicate_payment", "negative", "urgent"),
        ("account_locked", "neutral", "high"),
        ("failed_payment", "positive", "high"),
        ("refund_request", "negative", "high"),
        ("statement_error", "neutral", "normal"),
        ("other", "positive", "low"),
    ],
)
def test_zendesk_priority_table(category: str, sentiment: str, priority: str) -> None:
    assert zendesk_priority(category, sentiment) == priority


def jira(api: FakeTicketApi, client: httpx.AsyncClient) -> JiraTicketSystem:
    return JiraTicketSystem(client, api.url, "ops@bank.example", "jira-token", "OPS", "Bug")


async def test_jira_issue_shape_auth_and_lookup_first(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request(language="it")
    key = await jira(api, client).create_ticket(request)
    assert key == "OPS-1"
    [search] = api.requests_to(JIRA_SEARCH_PATH)
    [create] = api.requests_to(JIRA_ISSUE_PATH)
    assert api.received.index(search) < api.received.index(create)
    for arrived in (search, create):
        assert arrived.headers["authorization"] == basic("ops@bank.example", "jira-token")
    label = f"incidentflow-{request.incident_id}"
    assert search.json() == {
        "jql": f'project = "OPS" AND labels = "{label}"',
        "fields": ["key"],
        "maxResults": 1,
    }
    fields = create.json()["fields"]
    assert fields["project"] == {"key": "OPS"}
    assert fields["issuetype"] == {"name": "Bug"}
    assert str(request.incident_id) in fields["summary"]
    assert label in fields["labels"]
    description = fields["description"]
    assert (description["type"], description["version"]) == ("doc", 1)
    assert "language it" in json.dumps(description)
    assert description["content"][0] == {
        "type": "paragraph",
        "content": [{"type": "text", "text": "I was charged twice"}],
    }


async def test_jira_redelivered_create_reuses_the_issue_found_by_label(
    api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request, other = new_request(), new_request()
    tickets = jira(api, client)
    first = await tickets.create_ticket(request)
    assert await tickets.create_ticket(other) == "OPS-2"
    assert await tickets.create_ticket(request) == first
    assert len(api.requests_to(JIRA_ISSUE_PATH)) == 2
    assert len(api.requests_to(JIRA_SEARCH_PATH)) == 3
    assert len(api.tickets_for(request.incident_id)) == 1


async def test_local_ticket_is_one_per_incident_in_postgres(db: asyncpg.Pool) -> None:
    request, other = new_request(), new_request(sentiment="positive")
    for incident in (request, other):
        await insert_incident(db, incident)
    tickets = LocalTicketSystem(lambda: db)
    # Concurrent deliveries of the same incident still open one ticket.
    ids = await asyncio.gather(*(tickets.create_ticket(request) for _ in range(5)))
    assert len(set(ids)) == 1
    assert re.fullmatch(r"LOC-\d{6}", ids[0])
    assert await tickets.create_ticket(other) != ids[0]
    rows = await db.fetch(
        "SELECT ticket_id, incident_id, category, status FROM local_tickets ORDER BY number"
    )
    assert len(rows) == 2
    assert (rows[0]["ticket_id"], rows[0]["incident_id"]) == (ids[0], request.incident_id)
    assert rows[0]["status"] == "open"


def test_backend_defaults_local_and_rest_when_only_a_url_is_set() -> None:
    assert TicketingSettings().backend == "local"
    assert TicketingSettings(url="http://tickets.example/api").backend == "rest"
    assert TicketingSettings(backend="local", url="http://x").backend == "local"


def test_zendesk_base_url_from_subdomain_unless_overridden() -> None:
    settings = TicketingSettings(
        backend="zendesk", zendesk_subdomain="acme", zendesk_email="a@b", zendesk_api_token="t"
    )
    assert settings.zendesk_base_url == "https://acme.zendesk.com"
    assert settings.model_copy(update={"url": "http://127.0.0.1:9"}).zendesk_base_url == (
        "http://127.0.0.1:9"
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"backend": "rest"}, "TICKETING_URL"),
        ({"backend": "zendesk", "zendesk_email": "a@b"}, "TICKETING_ZENDESK_API_TOKEN"),
        ({"backend": "jira", "url": "http://j", "jira_email": "a"}, "TICKETING_JIRA_PROJECT"),
    ],
)
def test_a_backend_missing_its_settings_refuses_to_start(
    fields: dict[str, str], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        TicketingSettings(**fields)  # type: ignore[arg-type]


async def test_settings_pick_the_backend_the_service_runs_with(
    db: asyncpg.Pool, api: FakeTicketApi, client: httpx.AsyncClient
) -> None:
    request = new_request()
    await insert_incident(db, request)
    local = ticket_system(TicketingSettings(), client, lambda: db)
    assert isinstance(local, LocalTicketSystem)
    assert (await local.create_ticket(request)).startswith("LOC-")
    zendesk = ticket_system(
        TicketingSettings(
            backend="zendesk",
            url=api.url,
            zendesk_email="agent@bank.example",
            zendesk_api_token="zd",
        ),
        client,
        lambda: db,
    )
    assert await zendesk.create_ticket(request) == "1001"
    assert api.received[-1].path == ZENDESK_PATH
    rest = ticket_system(TicketingSettings(url=api.url + REST_PATH), client, lambda: db)
    assert await rest.create_ticket(request) == "REST-2"
