"""The console against a real Postgres and a real uvicorn: signing in, reading, changing (as
the API changes, audited with the operator), and what it refuses."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from services.console.app import SESSION_COOKIE
from tests.services.console.conftest import (
    OPERATE_KEY,
    READ_KEY,
    SUBMIT_KEY,
    a_classified_incident,
    serving,
    signed_in,
)


async def audit_of(pool: asyncpg.Pool, incident_id: uuid.UUID) -> list[tuple[str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_name, outcome FROM audit_events WHERE incident_id = $1 AND service ="
            " 'ingest' AND event_name <> 'incident.received' ORDER BY id",
            incident_id,
        )
    return [(r["event_name"], r["outcome"]) for r in rows]


async def test_without_a_session_every_page_sends_to_sign_in(
    console: httpx.AsyncClient,
) -> None:
    for path in ("/incidents", "/review", f"/incidents/{uuid.uuid4()}"):
        answer = await console.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/sign-in?next=")


async def test_a_wrong_key_or_a_submit_only_key_does_not_sign_in(
    console: httpx.AsyncClient,
) -> None:
    wrong = await console.post("/sign-in", data={"key": "not-a-key"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.text
    submit_only = await console.post("/sign-in", data={"key": SUBMIT_KEY})
    assert submit_only.status_code == 403
    assert SESSION_COOKIE not in console.cookies


async def test_the_session_cookie_is_http_only_and_strict(console: httpx.AsyncClient) -> None:
    answer = await console.post("/sign-in", data={"key": READ_KEY})
    cookie = answer.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie
    page = await console.get("/sign-in")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_an_operator_filters_opens_corrects_and_resolves(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "My card was swallowed by the ATM")
    token = await signed_in(console, OPERATE_KEY)

    listed = await console.get("/incidents", params={"category": "duplicate_payment", "q": "ATM"})
    assert str(incident_id) in listed.text
    other = await console.get("/incidents", params={"category": "fraud_report", "q": "ATM"})
    assert str(incident_id) not in other.text
    assert str(incident_id) in (await console.get("/review")).text

    page = await console.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and "My card was swallowed by the ATM" in page.text

    corrected = await console.post(
        f"/incidents/{incident_id}/corrections",
        data={"category": "other", "note": "an ATM, not a payment", "csrf": token},
    )
    assert corrected.status_code == 303
    resolved = await console.post(
        f"/incidents/{incident_id}/status", data={"status": "resolved", "csrf": token}
    )
    assert resolved.status_code == 303

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT classification, needs_review, status FROM incidents WHERE id = $1",
            incident_id,
        )
    assert (row["classification"], row["needs_review"], row["status"]) == (
        "other",
        False,
        "resolved",
    )
    assert await audit_of(pool, incident_id) == [
        ("classification.corrected", "classification corrected by key:agents"),
        ("incident.resolved", "resolved by key:agents"),
    ]
    assert str(incident_id) not in (await console.get("/review")).text


async def test_a_read_key_sees_everything_and_changes_nothing(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Refund never arrived for order 77")
    token = await signed_in(console, READ_KEY)
    page = await console.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and "Refund never arrived" in page.text
    assert "Correct category" not in page.text  # no forms it could not use
    refused = await console.post(
        f"/incidents/{incident_id}/status", data={"status": "resolved", "csrf": token}
    )
    assert refused.status_code == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) == (
            "open"
        )
    assert await audit_of(pool, incident_id) == []


async def test_a_form_without_its_csrf_token_is_refused(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Locked out after the app update")
    await signed_in(console, OPERATE_KEY)
    for data in ({"status": "resolved"}, {"status": "resolved", "csrf": "forged"}):
        refused = await console.post(f"/incidents/{incident_id}/status", data=data)
        assert refused.status_code == 403
    assert await audit_of(pool, incident_id) == []


async def test_signing_out_ends_the_session(console: httpx.AsyncClient) -> None:
    token = await signed_in(console, OPERATE_KEY)
    assert (await console.post("/sign-out", data={"csrf": token})).status_code == 303
    assert (await console.get("/incidents")).status_code == 303


async def test_open_in_development_with_a_banner(console_database: str) -> None:
    async with serving(console_database, []) as open_console:
        page = await open_console.get("/incidents")
    assert page.status_code == 200
    assert "Development mode" in page.text


async def test_what_customers_wrote_is_shown_as_text_never_markup(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, '<script>alert("x")</script><b>bold</b>')
    await signed_in(console, READ_KEY)
    for path in (f"/incidents/{incident_id}", "/review"):
        page = (await console.get(path)).text
        assert '<script>alert("x")</script>' not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
