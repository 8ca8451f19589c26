"""What ingest does with what callers send: repeats, oversize and unstorable input, CORS, limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.services.ingest.conftest import count, ingest_settings, serve


def body(customer: str, message: str = "I was charged twice", **extra: str) -> dict[str, str]:
    return {
        "customer_id": customer,
        "channel": "email",
        "email": "a@b.co",
        "message": message,
        **extra,
    }


def customer() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(rabbitmq_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ingest_settings(
        rabbitmq_url,
        database_url,
        max_body_bytes=4096,
        cors_origins=["https://support.example.com"],
        rate_limit_per_customer="3/minute",
        rate_limit_per_key="1000/minute",
    )
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def incidents_of(database_url: str, customer_id: str) -> int:
    """How many incidents the customer has on record."""
    return await count(
        database_url, "SELECT count(*) FROM incidents WHERE customer_id = $1", customer_id
    )


async def test_idempotency_key_answers_with_the_same_incident(
    client: httpx.AsyncClient, database_url: str
) -> None:
    who, key = customer(), {"Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/api/incidents", json=body(who), headers=key)
    again = await client.post("/api/incidents", json=body(who), headers=key)
    assert first.status_code == 202 and again.status_code in (201, 202)
    assert again.json()["incident_id"] == first.json()["incident_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await incidents_of(database_url, who) == 1
    assert (
        await count(
            database_url, "SELECT count(*) FROM outbox WHERE payload->>'customer_id' = $1", who
        )
        == 1
    )
    assert (
        await count(
            database_url, "SELECT count(*) FROM incident_reports WHERE customer_id = $1", who
        )
        == 0
    )

    changed = await client.post("/api/incidents", json=body(who, "something else"), headers=key)
    assert changed.status_code == 422
    [error] = changed.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert "different request body" in error["msg"]


async def test_duplicate_report_joins_the_open_incident(
    client: httpx.AsyncClient, database_url: str
) -> None:
    who = customer()
    first = await client.post("/api/incidents", json=body(who, "My card was charged TWICE"))
    repeat = await client.post("/api/incidents", json=body(who, "  my card   was charged twice "))
    assert first.status_code == 202
    assert repeat.status_code == 200
    assert repeat.json()["duplicate"] is True
    assert (
        repeat.json()["duplicate_of"] == repeat.json()["incident_id"] == first.json()["incident_id"]
    )
    assert "duplicate" not in first.json()  # a new incident keeps the seed's fields
    assert await incidents_of(database_url, who) == 1
    kept = await count(
        database_url,
        "SELECT count(*) FROM incident_reports WHERE incident_id = $1 AND message = $2",
        uuid.UUID(first.json()["incident_id"]),
        "  my card   was charged twice ".strip(),
    )
    assert kept == 1  # what the customer wrote the second time is kept
    state = (await client.get(f"/api/incidents/{first.json()['incident_id']}")).json()
    assert state["repeat_reports"] == 1
    assert "incident.report_linked" in [a["event_name"] for a in state["audit"]]

    other = await client.post("/api/incidents", json=body(customer(), "My card was charged TWICE"))
    assert other.status_code == 202 and other.json()["incident_id"] != first.json()["incident_id"]


async def test_wait_0_answers_with_the_incident_as_accepted(
    client: httpx.AsyncClient, database_url: str
) -> None:
    answer = await client.post(
        "/api/incidents", json=body(customer()), headers={"Prefer": "wait=0"}
    )
    assert answer.status_code == 202
    created = answer.json()
    assert answer.headers["Location"] == f"/api/incidents/{created['incident_id']}"
    assert {k: v for k, v in created.items() if k != "incident_id"} == {
        "ticket_id": None,
        "status": "open",
        "classification": None,
        "confidence": None,
        "message": "Incident received and being processed. Follow its state at the Location URL.",
    }
    stored = await count(
        database_url,
        "SELECT count(*) FROM incidents WHERE id = $1",
        uuid.UUID(created["incident_id"]),
    )
    assert stored == 1


async def test_identical_reports_at_once_make_one_incident(
    rabbitmq_url: str, database_url: str
) -> None:
    """The customer's lock inside the one-statement report (migration 0009): reports racing
    each other still see the incident the first one stored."""
    settings = ingest_settings(rabbitmq_url, database_url, rate_limit_per_customer="100/minute")
    who = customer()
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        answers = await asyncio.gather(
            *(client.post("/api/incidents", json=body(who)) for _ in range(12))
        )
    assert sorted(a.status_code for a in answers) == [200] * 11 + [202]
    assert len({a.json()["incident_id"] for a in answers}) == 1
    assert await incidents_of(database_url, who) == 1
    assert (
        await count(
            database_url, "SELECT count(*) FROM incident_reports WHERE customer_id = $1", who
        )
        == 11
    )


async def test_duplicate_window_zero_is_off(rabbitmq_url: str, database_url: str) -> None:
    settings = ingest_settings(rabbitmq_url, database_url, duplicate_window_seconds=0)
    who = customer()
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        first = await client.post("/api/incidents", json=body(who))
        second = await client.post("/api/incidents", json=body(who))
    assert first.status_code == second.status_code == 202
    assert first.json()["incident_id"] != second.json()["incident_id"]


async def test_oversize_body_is_413(client: httpx.AsyncClient, database_url: str) -> None:
    who = customer()
    big = body(who, "x" * 5000)
    response = await client.post("/api/incidents", json=big)
    assert response.status_code == 413
    assert "larger than 4096 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"customer_id": "' + who.encode() + b'", "message": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'", "channel": "email", "email": "a@b.co"}'

    streamed = await client.post(
        "/api/incidents",
        content=Chunked(chunks()),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert await incidents_of(database_url, who) == 0


class Chunked(httpx.AsyncByteStream):
    """A body sent with Transfer-Encoding: chunked."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self.parts = list(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part


@pytest.mark.parametrize("field", ["customer_id", "message", "email", "phone"])
async def test_nul_characters_are_422_naming_the_field(
    client: httpx.AsyncClient, field: str
) -> None:
    sent = body(customer(), phone="+14155550123")
    sent[field] = sent[field][:3] + "\x00" + sent[field][3:]
    response = await client.post("/api/incidents", json=sent)
    assert response.status_code == 422
    assert ["body", field] in [e["loc"][:2] for e in response.json()["detail"]]


async def test_nul_in_a_correction_or_a_query_is_422(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/incidents", json=body(customer()))).json()
    response = await client.post(
        f"/api/incidents/{created['incident_id']}/corrections",
        json={"category": "other", "note": "ann\x00"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "note"]
    listed = await client.get("/api/incidents", params={"customer_id": "a\x00b"})
    assert listed.status_code == 422
    assert listed.json()["detail"][0]["loc"] == ["query", "customer_id"]


@pytest.mark.parametrize(
    "raw",
    [b'{"customer_id": "\xff\xfe", "message": "x"}', b'{"customer_id": "7", "message": "\\ud800"}'],
    ids=["not UTF-8", "lone surrogate"],
)
async def test_unstorable_bytes_are_422(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/incidents", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_phone_is_checked_and_stored_as_e164(
    client: httpx.AsyncClient, database_url: str
) -> None:
    who = customer()
    bad = await client.post("/api/incidents", json=body(who, phone="+1 555 000"))
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "phone"]
    good = await client.post("/api/incidents", json=body(who, phone="+44 20 7946 0958"))
    assert good.status_code == 202
    conn_count = await count(
        database_url,
        "SELECT count(*) FROM incidents WHERE customer_id = $1 AND phone = $2",
        who,
        "+442079460958",
    )
    assert conn_count == 1


async def test_cors_only_for_the_configured_origins(
    client: httpx.AsyncClient, rabbitmq_url: str, database_url: str
) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = await client.options(
        "/api/incidents", headers={"Origin": "https://support.example.com", **preflight}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://support.example.com"
    other = await client.options(
        "/api/incidents", headers={"Origin": "https://evil.example.com", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
    async with (
        serve(ingest_settings(rabbitmq_url, database_url)) as url,
        httpx.AsyncClient(base_url=url) as plain,
    ):
        off = await plain.get("/api/stats", headers={"Origin": "https://support.example.com"})
    assert "access-control-allow-origin" not in off.headers


async def test_per_customer_rate_limit_is_429_with_retry_after(client: httpx.AsyncClient) -> None:
    who = customer()
    statuses = [
        (await client.post("/api/incidents", json=body(who, f"message {n}"))).status_code
        for n in range(3)
    ]
    assert statuses == [202, 202, 202]
    limited = await client.post("/api/incidents", json=body(who, "one more"))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "per customer" in limited.json()["detail"]
    assert (await client.post("/api/incidents", json=body(customer()))).status_code == 202


async def test_per_caller_rate_limit(rabbitmq_url: str, database_url: str) -> None:
    settings = ingest_settings(rabbitmq_url, database_url, rate_limit_per_key="2/minute")
    async with serve(settings) as url, httpx.AsyncClient(base_url=url) as client:
        assert [(await client.get("/api/incidents")).status_code for _ in range(2)] == [200, 200]
        limited = await client.get("/api/incidents")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_stats_show_notifications_and_dead_letters(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/api/stats")).json()
    assert set(stats["notifications_by_status"]) >= {
        "queued",
        "sending",
        "sent",
        "failed",
        "logged",
    }
    assert isinstance(stats["notifications_retried"], int)
    assert stats["dead_letters"] is not None
    assert "sentiment.incident-received.dlq" in stats["dead_letters"]
    assert {"total", "by_status", "by_category", "needs_review"} <= set(stats)
