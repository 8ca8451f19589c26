"""A public intake is not a relay: whoever submits incidents cannot make the company's own
domain mail one address over and over, nor carry their link to it. The whole system runs, as
`make up` starts it, with the default limit per recipient."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from incidentflow_tools.stack import Stack
from tests.e2e.conftest import read_inbox, wait_until
from tests.security.conftest import DEFAULT_LIMIT

PHISHING = "Your account is locked, verify it now at http://evil.example/login or evil.example/x"


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.2)


def post(stack: Stack, customer_id: str, email: str, message: str) -> httpx.Response:
    body = {"customer_id": customer_id, "channel": "email", "message": message, "email": email}
    # Prefer: wait=0 answers at once; the pipeline goes on in the background.
    return httpx.post(
        stack.url("ingest") + "/api/incidents",
        json=body,
        headers={"Prefer": "wait=0"},
        timeout=30,
    )


async def notification_statuses(database_url: str, address_part: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """
            SELECT n.status FROM notifications n JOIN incidents i ON i.id = n.incident_id
            WHERE i.email LIKE $1 AND n.channel = 'email' AND n.kind = 'ack'
            """,
            f"%{address_part}%",
        )
    finally:
        await conn.close()
    return sorted(r["status"] for r in rows)


async def test_twenty_customers_cannot_make_us_mail_one_address_more_than_the_limit(
    security_stack: Stack, security_database_url: str
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    answers = [
        post(security_stack, f"attacker-{n}", victim, f"I was charged twice for order {n}")
        for n in range(20)
    ]
    assert [a.status_code for a in answers] == [202] * 20, answers[0].text

    async def settled() -> bool:
        statuses = await notification_statuses(security_database_url, victim.split("@")[0])
        return len([s for s in statuses if s in {"sent", "suppressed"}]) == 20

    await wait_for(settled, timeout=120)
    mails_to_victim = [m for m in read_inbox(security_stack.mail_dir) if m["To"] == victim]
    assert len(mails_to_victim) == DEFAULT_LIMIT
    statuses = await notification_statuses(security_database_url, victim.split("@")[0])
    assert statuses == ["sent"] * DEFAULT_LIMIT + ["suppressed"] * (20 - DEFAULT_LIMIT)
    # Every incident was still taken, ticketed and acknowledged in the record.
    conn = await asyncpg.connect(security_database_url)
    try:
        ticketed = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE email = $1 AND ticket_id IS NOT NULL", victim
        )
    finally:
        await conn.close()
    assert ticketed == 20
    metrics = httpx.get(security_stack.url("notifier") + "/metrics", timeout=10).text
    assert 'status="suppressed"' in metrics


async def test_an_acknowledgement_does_not_carry_the_submitted_link(security_stack: Stack) -> None:
    customer = f"phish-{uuid.uuid4().hex[:8]}@example.com"
    assert post(security_stack, "c1", customer, PHISHING).status_code == 202

    def mails() -> list[object]:
        return [m for m in read_inbox(security_stack.mail_dir) if m["To"] == customer]

    wait_until(lambda: len(mails()) == 1, timeout=120)
    [mail] = [m for m in read_inbox(security_stack.mail_dir) if m["To"] == customer]
    for subtype in ("plain", "html"):
        part = mail.get_body((subtype,))
        assert part is not None
        body = str(part.get_content())
        assert "evil.example" not in body and "http" not in body, subtype
        assert "Ticket" in body or "ticket" in body
