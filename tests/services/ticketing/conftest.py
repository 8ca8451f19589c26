"""Ticketing's fixtures: the fake ticket API, an HTTP client, a database of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from incidentflow.db import create_pool
from incidentflow_tools.sandbox import own_database
from services.ticketing.tickets import TicketRequest, fallback_ticket_id
from tests.fake_tickets import FakeTicketApi, fake_ticket_api


@pytest.fixture
def api() -> Iterator[FakeTicketApi]:
    with fake_ticket_api() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=0.5) as http:
        yield http


@pytest.fixture(scope="module")
def ticketing_database(database_url: str) -> Iterator[str]:
    """A database of these tests alone: a running stack's reconciler (which shares the
    session's database) must not swap the fallbacks these tests set up."""
    with own_database(database_url, "ticketing") as url:
        yield url


@pytest.fixture
async def db(ticketing_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(ticketing_database, 8)
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE incidents CASCADE")
    try:
        yield pool
    finally:
        await pool.close()


def new_request(**fields: str) -> TicketRequest:
    values = {
        "category": "duplicate_payment",
        "message": "I was charged twice",
        "customer_id": "99876",
        "sentiment": "negative",
        **fields,
    }
    return TicketRequest(incident_id=uuid.uuid4(), **values)


async def insert_incident(
    pool: asyncpg.Pool, request: TicketRequest, *, fallback: bool | None = None
) -> None:
    """The incident row as ingest and the classifier leave it; with ``fallback``, ticketed
    with its fallback id (True) or not yet ticketed (None)."""
    await pool.execute(
        """
        INSERT INTO incidents (id, customer_id, channel, message, email, classification,
                               sentiment, ticket_id, ticket_fallback)
        VALUES ($1, $2, 'email', $3, 'customer@example.com', $4, $5, $6, $7)
        """,
        request.incident_id,
        request.customer_id,
        request.message,
        request.category,
        request.sentiment,
        fallback_ticket_id(request.incident_id) if fallback else None,
        fallback,
    )
