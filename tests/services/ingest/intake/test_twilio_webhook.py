"""Texts in through Twilio's webhook, against a real ingest server and database.

Requests are signed as Twilio signs them (``expected_signature``, itself checked against
Twilio's documented example in test_twilio_signature.py).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest

from services.ingest.intake.twilio import EMPTY_TWIML, PATH
from services.ingest.intake.twilio_signature import expected_signature
from tests.services.ingest.conftest import count, ingest_settings, serve

TOKEN = "twilio-auth-token-of-the-test-account"
PUBLIC_URL = "https://support.example.com/hooks/twilio"


def new_number() -> str:
    return f"+1415{random.randrange(2_000_000, 9_999_999)}"


def text_from(number: str, body: str, *, whatsapp: bool = False) -> dict[str, str]:
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": ("whatsapp:" if whatsapp else "") + number,
        "To": "+14155550100",
        "Body": body,
        "NumMedia": "0",
    }


async def post_signed(
    client: httpx.AsyncClient, params: dict[str, str], *, url: str | None = None, token: str = TOKEN
) -> httpx.Response:
    signed_over = url or f"{client.base_url}{PATH}"
    signature = expected_signature(token, signed_over, params.items())
    return await client.post(
        PATH,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


@pytest.fixture
async def client(rabbitmq_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ingest_settings(rabbitmq_url, database_url, TWILIO_AUTH_TOKEN=TOKEN)
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def incidents_of(database_url: str, number: str) -> int:
    return await count(database_url, "SELECT count(*) FROM incidents WHERE phone = $1", number)


async def incident_of(database_url: str, number: str) -> uuid.UUID:
    """The one incident of ``number``."""
    conn = await asyncpg.connect(database_url)
    try:
        [row] = await conn.fetch("SELECT id FROM incidents WHERE phone = $1", number)
    finally:
        await conn.close()
    return row["id"]  # type: ignore[no-any-return]


async def test_a_signed_text_becomes_an_incident_and_the_next_one_joins_it(
    client: httpx.AsyncClient, database_url: str
) -> None:
    number = new_number()
    first = await post_signed(client, text_from(number, "I was charged twice for my rent"))
    assert first.status_code == 200, first.text
    assert first.text == EMPTY_TWIML and first.headers["content-type"].startswith("application/xml")
    incident_id = await incident_of(database_url, number)

    second = await post_signed(client, text_from(number, "It happened again today"))
    assert second.status_code == 200, second.text
    assert await incidents_of(database_url, number) == 1

    state = (await client.get(f"/api/incidents/{incident_id}")).json()
    assert state["channel"] == "sms"
    customer_messages = [m for m in state["messages"] if m["direction"] == "in"]
    assert [m["body"] for m in customer_messages] == [
        "I was charged twice for my rent",
        "It happened again today",
    ]
    assert {m["channel"] for m in customer_messages} == {"sms"}
    assert "incident.message_received" in [a["event_name"] for a in state["audit"]]


async def test_a_wrong_signature_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    number = new_number()
    params = text_from(number, "Someone used my card")
    forged = await post_signed(client, params, token="not-the-account-token")
    assert forged.status_code == 403
    unsigned = await client.post(PATH, data=params)
    assert unsigned.status_code == 403
    assert await incidents_of(database_url, number) == 0
    assert (
        await count(
            database_url,
            "SELECT count(*) FROM inbound_receipts WHERE external_id = $1",
            params["MessageSid"],
        )
        == 0
    )


async def test_a_repeated_webhook_is_taken_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    number = new_number()
    params = text_from(number, "My card payment failed at the pharmacy")
    for _ in range(3):  # Twilio retries a webhook whose answer it did not get
        assert (await post_signed(client, params)).status_code == 200
    assert await incidents_of(database_url, number) == 1
    assert (
        await count(
            database_url,
            "SELECT count(*) FROM incident_messages m JOIN incidents i ON i.id = m.incident_id"
            " WHERE i.phone = $1",
            number,
        )
        == 0
    )


async def test_whatsapp_texts_keep_their_channel(
    client: httpx.AsyncClient, database_url: str
) -> None:
    number = new_number()
    answer = await post_signed(client, text_from(number, "Mi cuenta está bloqueada", whatsapp=True))
    assert answer.status_code == 200
    incident_id = await incident_of(database_url, number)
    state = (await client.get(f"/api/incidents/{incident_id}")).json()
    assert state["channel"] == "whatsapp"


async def test_a_missing_field_is_named(client: httpx.AsyncClient) -> None:
    params = text_from(new_number(), "hello")
    del params["MessageSid"]
    answer = await post_signed(client, params)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "MessageSid"]


async def test_behind_a_proxy_the_public_url_is_what_is_signed(
    rabbitmq_url: str, database_url: str
) -> None:
    settings = ingest_settings(
        rabbitmq_url, database_url, TWILIO_AUTH_TOKEN=TOKEN, INTAKE_TWILIO_URL=PUBLIC_URL
    )
    number = new_number()
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        params = text_from(number, "Refund please, the order never came")
        assert (await post_signed(client, params)).status_code == 403
        assert (await post_signed(client, params, url=PUBLIC_URL)).status_code == 200
    assert await incidents_of(database_url, number) == 1


async def test_without_a_token_the_webhook_is_not_there(
    rabbitmq_url: str, database_url: str
) -> None:
    settings = ingest_settings(rabbitmq_url, database_url)
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await client.post(PATH, data=text_from(new_number(), "hello"))
    assert answer.status_code == 404


async def test_a_number_over_the_limit_gets_429_and_nothing_is_stored(
    rabbitmq_url: str, database_url: str
) -> None:
    settings = ingest_settings(
        rabbitmq_url, database_url, TWILIO_AUTH_TOKEN=TOKEN, rate_limit_per_customer="2/minute"
    )
    number = new_number()
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        answers = [
            await post_signed(client, text_from(number, f"text {n} about my blocked card"))
            for n in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) > 0
    assert (
        await count(
            database_url,
            "SELECT count(*) FROM incident_messages m JOIN incidents i ON i.id = m.incident_id"
            " WHERE i.phone = $1",
            number,
        )
        == 1  # the first text opened the incident, the second joined it, the third is refused
    )
