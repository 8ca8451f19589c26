"""The console on a real uvicorn against a database of its own."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from incidentflow.db import create_pool
from incidentflow_tools.sandbox import free_port, own_database
from services.console.app import create_app
from services.console.settings import ConsoleSettings
from services.ingest.keys import ApiKey, hash_key
from services.ingest.settings import IngestSettings
from tests.services.incidents import classified_from, stored_incident

OPERATE_KEY = "agent-key-0123456789abcdefghijklmnopqrstuvwxyz"
READ_KEY = "auditor-key-0123456789abcdefghijklmnopqrstuvwxyz"
SUBMIT_KEY = "frontend-key-0123456789abcdefghijklmnopqrstuvwxyz"
KEYS = [
    ApiKey(name="agents", scopes=frozenset({"read", "operate"}), digest=hash_key(OPERATE_KEY)),
    ApiKey(name="auditors", scopes=frozenset({"read"}), digest=hash_key(READ_KEY)),
    ApiKey(name="frontend", scopes=frozenset({"submit"}), digest=hash_key(SUBMIT_KEY)),
]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def console_database(database_url: str) -> Iterator[str]:
    with own_database(database_url, "console") as url:
        yield url


@pytest.fixture
async def pool(console_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(console_database, 2)
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def serving(
    database_url: str,
    keys: list[ApiKey],
    rabbitmq_url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "MIGRATE_ON_START": False,
        "DB_POOL_SIZE": 2,
        **({"RABBITMQ_URL": rabbitmq_url} if rabbitmq_url else {}),
        **(extra or {}),
    }
    settings = ConsoleSettings(**values)
    access = IngestSettings(DATABASE_URL=database_url, api_keys=keys)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, access),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            # A browser's live list still open when the test ends must not hold the stop.
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the console did not start"
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def console(console_database: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(console_database, KEYS) as client:
        yield client


async def signed_in(console: httpx.AsyncClient, key: str) -> str:
    """Signs in; the session's CSRF token, read from a page's form."""
    answer = await console.post("/sign-in", data={"key": key, "next": "/incidents"})
    assert answer.status_code == 303 and answer.headers["location"] == "/incidents"
    page = await console.get("/incidents")
    assert page.status_code == 200
    tokens: set[str] = set(CSRF_FIELD.findall(page.text))
    [token] = tokens
    return token


async def a_classified_incident(pool: asyncpg.Pool, message: str) -> uuid.UUID:
    event = classified_from(await stored_incident(pool, message))
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE incidents SET classification = $2, confidence = 0.55, needs_review = true,"
            " sentiment = 'negative', language = 'en' WHERE id = $1",
            event.incident_id,
            event.classification,
        )
    return event.incident_id
