"""Hostile input at the intake: tokens built to break the error header, key guessing, hidden
characters in identifiers and text, retry counts nobody should have set."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from contracts.topology import DELIVERY_LIMIT
from incidentflow import healthcheck
from incidentflow.messaging import RETRIES_HEADER, earlier_attempts, is_last_delivery
from incidentflow_tools.cli import app as cli
from incidentflow_tools.sandbox import free_port
from services.ingest.keys import ApiKey, hash_key
from services.ticketing.tickets import TicketRequest
from tests.fakes import Answer, fake_server
from tests.services.ingest.conftest import KEYS, SUBMIT_KEY, ingest_settings, serve
from tests.services.ingest.test_auth import AUDIENCE, ISSUER, IdentityProvider

BODY = {"channel": "email", "email": "a@b.co", "message": "I was charged twice"}


@pytest.mark.parametrize(
    "kid",
    ["rsa-1\r\nSet-Cookie: session=stolen", 'rsa"-1', "ключ-1", "\x00", "x" * 5000],
)
async def test_a_token_cannot_write_into_the_challenge_header(
    kid: str, rabbitmq_url: str, database_url: str
) -> None:
    idp = IdentityProvider()
    with fake_server(default=Answer(200, idp.jwks())) as jwks:
        settings = ingest_settings(
            rabbitmq_url,
            database_url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            jwt_jwks_url=jwks.url + "/.well-known/jwks.json",
        )
        async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            token = idp.token(kid=kid)
            response = await client.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert (
        challenge
        == 'Bearer realm="incidentflow", error_description="invalid token: signing key not known"'
    )
    assert "Set-Cookie" not in response.headers and kid not in response.text


async def test_guessing_keys_from_one_address_is_throttled_before_the_key_check(
    rabbitmq_url: str, database_url: str
) -> None:
    settings = ingest_settings(
        rabbitmq_url, database_url, api_keys=KEYS, auth_failures_per_client="5/minute"
    )
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        guesses = [
            (await client.get("/api/stats", headers={"X-API-Key": f"guess-{n}"})).status_code
            for n in range(8)
        ]
        assert guesses == [401] * 5 + [429] * 3
        # Even the right key waits now: the address is refused before any key is looked at.
        blocked = await client.post(
            "/api/incidents",
            json={**BODY, "customer_id": "c1"},
            headers={"X-API-Key": SUBMIT_KEY, "Prefer": "wait=0"},
        )
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "customer_id",
    ["c1\u202egnp.exe", "c1\x1b[31mred", "c1\r\nX-Forged: yes", "c1\u200bx", "c1\u2028x"],
)
async def test_hidden_characters_in_a_customer_id_are_refused_naming_the_field(
    customer_id: str, rabbitmq_url: str, database_url: str
) -> None:
    settings = ingest_settings(rabbitmq_url, database_url)
    marker = f"hidden-{uuid.uuid4().hex}"
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/api/incidents", json={**BODY, "customer_id": customer_id, "message": marker}
        )
    assert response.status_code == 422
    assert any(error["loc"][-1] == "customer_id" for error in response.json()["detail"])
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM incidents WHERE message = $1", marker)
    finally:
        await conn.close()
    assert stored == 0


def test_text_reaching_a_ticket_system_carries_no_escapes_or_bidi_controls() -> None:
    request = TicketRequest(
        incident_id=uuid.uuid4(),
        category="other",
        message="line one\r\nline two \x1b[2J\x1b[31mred\u202eevil\u2066 end\ttab",
        customer_id="c\x07-1",
        sentiment="neutral",
    )
    assert "\x1b" not in request.message and "\x07" not in request.customer_id
    assert "\u202e" not in request.message and "\u2066" not in request.message
    assert "\r" not in request.message
    assert "line one" in request.message and "\nline two" in request.message
    assert "\ttab" in request.message


@pytest.mark.parametrize(
    ("value", "counted"),
    [
        (-1000, 0),
        ("-5", 0),
        ("abc", 0),
        (b"3", 3),
        (3.7, 0),
        (True, 0),
        (10**12, DELIVERY_LIMIT),
        ("\u00b2", 0),  # a digit to str.isdigit, not to int()
        ("9" * 5000, DELIVERY_LIMIT),  # past what int() parses
    ],
)
def test_a_retry_count_header_is_validated_and_clamped(value: object, counted: int) -> None:
    assert earlier_attempts({RETRIES_HEADER: value}) == counted


def test_a_huge_retry_count_is_a_last_delivery_not_a_crash() -> None:
    assert is_last_delivery({RETRIES_HEADER: "999999999999999999999"})
    assert not is_last_delivery({RETRIES_HEADER: "-999999"})


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_production_does_not_publish_the_api_map(
    path: str, rabbitmq_url: str, database_url: str
) -> None:
    from services.ingest.app import create_app

    settings = ingest_settings(rabbitmq_url, database_url, api_keys=KEYS)
    development = create_app(settings)
    settings.env = "production"  # after validation: the test servers' credentials are defaults
    production = create_app(settings)
    for app, expected in ((development, 200), (production, 404)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            assert (await client.get(path)).status_code == expected, path


async def test_with_a_key_secret_the_entries_hold_hmacs_not_hashes(
    rabbitmq_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = "weak-but-allowed", "server-side-secret-0123456789"
    monkeypatch.setenv("INGEST_API_KEY_SECRET", secret)
    made = CliRunner().invoke(
        cli, ["api-key", "hash", "--name", "ops", "--scopes", "read"], input=f"{key}\n"
    )
    assert made.exit_code == 0, made.output
    keyed = ApiKey.parse(made.output.strip())
    assert keyed.digest == hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()
    plain = ApiKey(name="plain", scopes=frozenset({"read"}), digest=hash_key(key))
    for entries, expected in (([keyed], 200), ([plain], 401)):
        settings = ingest_settings(
            rabbitmq_url, database_url, api_keys=entries, api_key_secret=secret
        )
        async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            answer = await client.get("/api/stats", headers={"X-API-Key": key})
        assert answer.status_code == expected, entries


async def test_production_answers_probes_and_metrics_only_on_the_internal_port(
    rabbitmq_url: str, database_url: str
) -> None:
    internal_port = free_port()
    settings = ingest_settings(
        rabbitmq_url, database_url, api_keys=KEYS, internal_port=internal_port
    )
    settings.env = "production"  # after validation: the test servers' credentials are defaults
    async with serve(settings) as url, httpx.AsyncClient(timeout=10) as client:
        internal = f"http://127.0.0.1:{internal_port}"
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert (await client.get(url + path)).status_code == 404, path
            assert (await client.get(internal + path)).status_code == 200, path
        assert "incidentflow_" in (await client.get(internal + "/metrics")).text
        # The API stays where it was, and only there.
        refused = await client.get(url + "/api/stats")
        assert refused.status_code == 401
        assert (await client.get(internal + "/api/stats")).status_code == 404
        # The image's HEALTHCHECK finds it there (and not on a port nobody serves).
        assert await asyncio.to_thread(healthcheck.ready, internal_port)
        assert not await asyncio.to_thread(healthcheck.ready, free_port())
