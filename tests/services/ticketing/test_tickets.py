"""Ticketing against a real HTTP ticket API on loopback; fallback ids when it fails."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx

from contracts.events import IncidentClassified
from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.handlers import open_ticket
from services.ticketing.tickets import fallback_ticket_id
from tests.fakes import Answer, fake_server

EVENT = IncidentClassified(
    incident_id=uuid.uuid4(),
    customer_id="99876",
    channel="email",
    message="charged twice",
    email="a@example.com",
    created_at=datetime.now(UTC),
    sentiment="negative",
    polarity=-0.6,
    classification="duplicate_payment",
    confidence=0.97,
    reason="twice",
    classifier_model="local",
)


def test_fallback_id_is_tkt_and_8_hex_and_stable() -> None:
    incident = uuid.uuid4()
    assert re.fullmatch(r"TKT-[0-9a-f]{8}", fallback_ticket_id(incident))
    assert fallback_ticket_id(incident) == fallback_ticket_id(incident)
    assert fallback_ticket_id(incident) != fallback_ticket_id(uuid.uuid4())


async def test_rest_ticket_is_created_with_bearer_and_idempotency_key() -> None:
    with fake_server(Answer(201, {"id": "5678", "createdAt": "2025-11-09"})) as server:
        async with httpx.AsyncClient(timeout=2) as client:
            tickets = RestTicketSystem(client, server.url + "/api/tickets", "s3cret")
            ticket_id, fallback = await open_ticket(tickets, EVENT)
    assert (ticket_id, fallback) == ("5678", False)
    request = server.received[0]
    assert request.path == "/api/tickets"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["idempotency-key"] == f"incident-{EVENT.incident_id}"
    assert (
        request.json().items()
        >= {
            "incident_id": str(EVENT.incident_id),
            "category": "duplicate_payment",
            "message": "charged twice",
        }.items()
    )


async def test_failing_or_hanging_ticket_api_gives_the_fallback_id() -> None:
    for answer in (Answer(503, {}), Answer(200, {"no": "id"}), Answer(200, {}, delay=2)):
        with fake_server(answer) as server:
            async with httpx.AsyncClient(timeout=0.5) as client:
                tickets = RestTicketSystem(client, server.url, None)
                assert await open_ticket(tickets, EVENT) == (
                    fallback_ticket_id(EVENT.incident_id),
                    True,
                )


async def test_no_ticket_system_configured_gives_the_fallback_id() -> None:
    assert await open_ticket(None, EVENT) == (fallback_ticket_id(EVENT.incident_id), True)
