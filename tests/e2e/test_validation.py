"""Bad requests get a 422 naming the field, and leave nothing stored or published."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from incidentflow_tools.stack import Stack

VALID = {"customer_id": "7", "channel": "email", "message": "charged twice", "email": "a@b.co"}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != field}


CASES = [
    pytest.param(without("customer_id"), "customer_id", id="missing customer_id"),
    pytest.param(without("message"), "message", id="missing message"),
    pytest.param(without("channel"), "channel", id="missing channel"),
    pytest.param(without("email"), "email", id="missing email"),
    pytest.param({**VALID, "customer_id": 99876}, "customer_id", id="customer_id not a string"),
    pytest.param({**VALID, "message": ["x"]}, "message", id="message not a string"),
    pytest.param({**VALID, "email": "not-an-email"}, "email", id="invalid email"),
    pytest.param({**VALID, "email": "a@b.co\r\nBcc: x@evil.co"}, "email", id="header injection"),
    pytest.param({**VALID, "channel": "pigeon"}, "channel", id="unknown channel"),
    pytest.param({**VALID, "message": ""}, "message", id="empty message"),
    pytest.param({**VALID, "message": "   "}, "message", id="blank message"),
    pytest.param({**VALID, "message": "x" * 5001}, "message", id="over-long message"),
    pytest.param({**VALID, "phone": "0044 123"}, "phone", id="phone not E.164"),
]


async def counts(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM incidents"),
            await conn.fetchval("SELECT count(*) FROM outbox"),
        )
    finally:
        await conn.close()


@pytest.mark.parametrize(("body", "field"), CASES)
async def test_rejected_with_field_and_nothing_stored(
    stack: Stack, database_url: str, body: dict[str, Any], field: str
) -> None:
    before = await counts(database_url)
    async with httpx.AsyncClient() as client:
        response = await client.post(stack.url("ingest") + "/api/incidents", json=body)
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    assert ["body", field] in [loc[:2] for loc in locations], locations
    assert await counts(database_url) == before


async def test_malformed_json_is_422(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            stack.url("ingest") + "/api/incidents",
            content=b'{"customer_id": ',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422


async def test_exactly_5000_characters_is_accepted(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            stack.url("ingest") + "/api/incidents",
            json={**VALID, "message": "y" * 5000},
            headers={"Prefer": "wait=0"},
        )
    assert response.status_code == 202


async def test_patch_rejects_unknown_status(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        created = await client.post(
            stack.url("ingest") + "/api/incidents", json=VALID, headers={"Prefer": "wait=0"}
        )
        response = await client.patch(
            f"{stack.url('ingest')}/api/incidents/{created.json()['incident_id']}",
            json={"status": "closed"},
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "status"]
