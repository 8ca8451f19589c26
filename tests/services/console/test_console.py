"""The console against a real Postgres and a real uvicorn: signing in, reading, changing (as
the API changes, audited with the operator), and what it refuses."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import asyncpg
import httpx

from contracts.topology import REMINDER_DUE
from incidentflow.messaging import declare_all
from incidentflow_tools.sandbox import own_vhost
from services.console.app import SESSION_COOKIE
from tests.services.console.conftest import (
    KEYS,
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


async def a_follow_up(pool: asyncpg.Pool, incident_id: uuid.UUID) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO reminders (incident_id, kind, due_at)"
            " VALUES ($1, 'follow_up', now() + interval '1 day')",
            incident_id,
        )


async def follow_up_state(pool: asyncpg.Pool, incident_id: uuid.UUID) -> tuple[str, bool]:
    """The follow-up's state, and whether it is due by now."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, due_at <= now() AS due FROM reminders WHERE incident_id = $1",
            incident_id,
        )
    return row["state"], row["due"]


async def test_an_operator_cancels_a_follow_up_and_a_reader_cannot(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Please stop the standing order")
    await a_follow_up(pool, incident_id)
    token = await signed_in(console, READ_KEY)
    path = f"/incidents/{incident_id}/follow-ups/cancel"
    assert (await console.post(path, data={"csrf": token})).status_code == 403
    assert await follow_up_state(pool, incident_id) == ("scheduled", False)

    token = await signed_in(console, OPERATE_KEY)
    assert "Cancel follow-ups" in (await console.get(f"/incidents/{incident_id}")).text
    assert (await console.post(path, data={"csrf": token})).status_code == 303
    assert (await follow_up_state(pool, incident_id))[0] == "cancelled"
    async with pool.acquire() as conn:
        outcome = await conn.fetchval(
            "SELECT outcome FROM audit_events WHERE incident_id = $1"
            " AND event_name = 'reminder.cancelled'",
            incident_id,
        )
    assert outcome == "cancelled: 1 reminder(s) by key:agents"


async def test_an_operator_sends_a_follow_up_now(
    console_database: str, pool: asyncpg.Pool, rabbitmq_url: str
) -> None:
    incident_id = await a_classified_incident(pool, "Card blocked abroad, please call")
    await a_follow_up(pool, incident_id)
    with own_vhost(rabbitmq_url) as vhost:
        await declare_all(vhost)
        async with serving(console_database, KEYS, rabbitmq_url=vhost) as console:
            token = await signed_in(console, OPERATE_KEY)
            answer = await console.post(
                f"/incidents/{incident_id}/follow-ups/fire", data={"csrf": token}
            )
            assert answer.status_code == 303
        assert await follow_up_state(pool, incident_id) == ("scheduled", True)
        # Handed to the reminder service: waiting in its queue of due reminders.
        connection = await aio_pika.connect(vhost)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(REMINDER_DUE.queue_name, passive=True)
            deadline = asyncio.get_running_loop().time() + 10
            while queue.declaration_result.message_count == 0:
                assert asyncio.get_running_loop().time() < deadline, "nothing was handed over"
                await asyncio.sleep(0.1)
                queue = await channel.declare_queue(REMINDER_DUE.queue_name, passive=True)


async def test_a_proxy_passing_a_bearer_token_signs_the_person_in(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Chargeback form will not submit")
    refused = await console.get("/incidents", headers={"Authorization": "Bearer not-a-key"})
    assert refused.status_code == 401
    bearer = {"Authorization": f"Bearer {READ_KEY}"}
    page = await console.get(f"/incidents/{incident_id}", headers=bearer)
    assert page.status_code == 200 and "Chargeback form will not submit" in page.text
    assert "key:auditors" in page.text


async def test_the_ticket_links_to_the_ticket_system_and_notifications_are_listed(
    console_database: str, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Charged a fee nobody told me about")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE incidents SET ticket_id = '4711', ticket_fallback = false WHERE id = $1",
            incident_id,
        )
        await conn.execute(
            "INSERT INTO notifications (incident_id, channel, kind, recipient, message, status,"
            " attempts) VALUES ($1, 'email', 'escalation', 'support-team@company.com',"
            " 'still open', 'sent', 1)",
            incident_id,
        )
    settings = {"ticket_url": "https://acme.zendesk.com/agent/tickets/{ticket_id}"}
    async with serving(console_database, KEYS, extra=settings) as console:
        await signed_in(console, READ_KEY)
        page = (await console.get(f"/incidents/{incident_id}")).text
    assert 'href="https://acme.zendesk.com/agent/tickets/4711"' in page
    assert "escalation" in page and "support-team@company.com" in page
