"""Operator actions are attributed to the authenticated caller, and reading is a grant of its
own: a key that may change incidents does not read every customer's, and the other way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from services.ingest.keys import ApiKey, hash_key
from tests.services.ingest.conftest import ingest_settings, serve

SUBMIT = "security-submit-0123456789abcdefghijklmnopqrstuvwxyz"
READ = "security-read-0123456789abcdefghijklmnopqrstuvwxyz"
OPERATE = "security-operate-0123456789abcdefghijklmnopqrstuvwxyz"
KEYS = [
    ApiKey(name="web", scopes=frozenset({"submit"}), digest=hash_key(SUBMIT)),
    ApiKey(name="auditor", scopes=frozenset({"read"}), digest=hash_key(READ)),
    ApiKey(name="resolver-bot", scopes=frozenset({"operate"}), digest=hash_key(OPERATE)),
]


@pytest.fixture
async def ingest(rabbitmq_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ingest_settings(rabbitmq_url, database_url, api_keys=KEYS)
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def new_incident(ingest: httpx.AsyncClient) -> str:
    created = await ingest.post(
        "/api/incidents",
        json={
            "customer_id": f"c-{uuid.uuid4().hex[:8]}",
            "channel": "email",
            "email": "a@b.co",
            "message": "twice",
        },
        headers={"X-API-Key": SUBMIT, "Prefer": "wait=0"},
    )
    assert created.status_code == 202
    return str(created.json()["incident_id"])


async def audit_rows(database_url: str, incident_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(  # type: ignore[no-any-return]
            """
            SELECT event_name, payload, outcome FROM audit_events
            WHERE incident_id = $1 AND service = 'ingest' AND event_name <> 'incident.received'
            ORDER BY recorded_at
            """,
            incident_id,
        )
    finally:
        await conn.close()


async def test_read_and_operate_are_separate_grants(ingest: httpx.AsyncClient) -> None:
    incident = f"/api/incidents/{await new_incident(ingest)}"
    read, operate = {"X-API-Key": READ}, {"X-API-Key": OPERATE}
    for path in (incident, "/api/incidents", "/api/stats"):
        assert (await ingest.get(path, headers=read)).status_code == 200, path
        refused = await ingest.get(path, headers=operate)
        assert refused.status_code == 403 and refused.json()["detail"] == "missing scope: read"
    changed = await ingest.patch(incident, json={"status": "resolved"}, headers=read)
    assert changed.status_code == 403 and changed.json()["detail"] == "missing scope: operate"


async def test_every_change_is_audited_with_the_caller(
    ingest: httpx.AsyncClient, database_url: str
) -> None:
    incident_id = await new_incident(ingest)
    incident = f"/api/incidents/{incident_id}"
    operate = {"X-API-Key": OPERATE}
    for status in ("resolved", "open"):
        answer = await ingest.patch(incident, json={"status": status}, headers=operate)
        assert answer.status_code == 200
    corrected = await ingest.post(
        f"{incident}/corrections", json={"category": "other", "note": "a question"}, headers=operate
    )
    assert corrected.status_code == 200
    assert corrected.json()["corrections"][0]["agent"] == "key:resolver-bot"
    rows = await audit_rows(database_url, incident_id)
    assert [r["event_name"] for r in rows] == [
        "incident.resolved",
        "incident.reopened",
        "classification.corrected",
    ]
    assert all("key:resolver-bot" in r["outcome"] for r in rows)


async def test_the_body_cannot_name_someone_else(ingest: httpx.AsyncClient) -> None:
    incident = f"/api/incidents/{await new_incident(ingest)}"
    named = await ingest.post(
        f"{incident}/corrections",
        json={"category": "other", "agent": "the-ceo"},
        headers={"X-API-Key": OPERATE},
    )
    assert named.status_code == 422
    assert named.json()["detail"][0]["loc"] == ["body", "agent"]
