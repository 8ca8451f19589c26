"""API keys with scopes, the identity provider's JWTs, and production refusing to run open."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from services.ingest.settings import IngestSettings
from tests.fakes import Answer, fake_server
from tests.services.ingest.conftest import (
    BOTH_KEY,
    KEYS,
    OPERATE_KEY,
    SUBMIT_KEY,
    ingest_settings,
    serve,
)

BODY = {"customer_id": "auth-1", "channel": "email", "email": "a@b.co"}
ISSUER = "https://idp.example.com/"
AUDIENCE = "incidentflow-ingest"


@pytest.fixture
async def keyed(rabbitmq_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ingest_settings(rabbitmq_url, database_url, api_keys=KEYS)
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def test_no_credential_is_401_with_a_challenge(keyed: httpx.AsyncClient) -> None:
    for request in (
        keyed.post("/api/incidents", json={**BODY, "message": "no key"}),
        keyed.get("/api/incidents"),
        keyed.get("/api/stats"),
    ):
        response = await request
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "API key" in response.json()["detail"]


async def test_wrong_key_is_401(keyed: httpx.AsyncClient) -> None:
    for headers in ({"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}):
        response = await keyed.get("/api/incidents", headers=headers)
        assert response.status_code == 401
        assert "unknown API key" in response.json()["detail"]


async def test_scopes_decide_what_a_key_may_do(keyed: httpx.AsyncClient) -> None:
    submit = {"X-API-Key": SUBMIT_KEY, "Prefer": "wait=0"}
    created = await keyed.post("/api/incidents", json={**BODY, "message": "scoped"}, headers=submit)
    assert created.status_code == 202
    incident = f"/api/incidents/{created.json()['incident_id']}"

    forbidden = await keyed.get(incident, headers=submit)
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] == "missing scope: read"
    for path in ("/api/incidents", "/api/stats"):
        assert (await keyed.get(path, headers=submit)).status_code == 403
    patched = await keyed.patch(incident, json={"status": "resolved"}, headers=submit)
    assert patched.status_code == 403

    operate = {"Authorization": f"Bearer {OPERATE_KEY}"}
    assert (await keyed.get(incident, headers=operate)).status_code == 200
    assert (await keyed.get("/api/stats", headers=operate)).status_code == 200
    refused = await keyed.post("/api/incidents", json={**BODY, "message": "x"}, headers=operate)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "missing scope: submit"

    both = {"X-API-Key": BOTH_KEY}
    patched = await keyed.patch(incident, json={"status": "resolved"}, headers=both)
    assert patched.status_code == 200


async def test_openapi_documents_security_and_errors(keyed: httpx.AsyncClient) -> None:
    spec = (await keyed.get("/openapi.json")).json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert {"bearer": []} in operation["security"], (method, path)
            assert {"401", "403", "413", "422", "429", "503"} <= set(operation["responses"])


def test_production_refuses_to_run_open() -> None:
    production: dict[str, Any] = {
        "ENV": "production",
        "RABBITMQ_URL": "amqp://ingest:s3cret@rabbitmq:5672/",
        "DATABASE_URL": "postgresql://ingest:s3cret@postgres:5432/incidentflow",
    }
    with pytest.raises(ValidationError, match="INGEST_API_KEYS"):
        IngestSettings(**production)
    # Keys without the server secret: their digests could be tried offline against guesses.
    with pytest.raises(ValidationError, match="INGEST_API_KEY_SECRET"):
        IngestSettings(**production, api_keys=KEYS)
    assert IngestSettings(**production, api_keys=KEYS, api_key_secret="long-secret").auth_enabled
    assert IngestSettings(
        **production, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url="https://idp/jwks"
    ).auth_enabled


class IdentityProvider:
    """Signing keys of a fake identity provider; its JWKS is served over real HTTP."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
            ]
        }

    def token(
        self, *, key: Any = None, alg: str = "RS256", kid: str = "rsa-1", **claims: Any
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "agent-7",
            "iat": now,
            "exp": now + 300,
            "scope": "read operate submit",
            **claims,
        }
        signer = key or (self.ec if alg == "ES256" else self.rsa)
        return jwt.encode(payload, signer, algorithm=alg, headers={"kid": kid})


async def test_jwt_bearer_tokens(rabbitmq_url: str, database_url: str) -> None:
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

            async def status(token: str, path: str = "/api/stats") -> httpx.Response:
                return await client.get(path, headers={"Authorization": f"Bearer {token}"})

            assert (await status(idp.token())).status_code == 200
            assert (await status(idp.token(alg="ES256", kid="ec-1"))).status_code == 200
            assert (await status(idp.token(scope=None, scp=["read"]))).status_code == 200
            assert (await status(idp.token(scope=None, scp="read"))).status_code == 200

            rejected = {
                "expired": idp.token(exp=int(time.time()) - 60),
                "wrong audience": idp.token(aud="someone-else"),
                "wrong issuer": idp.token(iss="https://evil.example.com/"),
                "bad signature": idp.token(key=idp.impostor),
                "alg none": jwt.encode(
                    {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60},
                    "",
                    algorithm="none",
                    headers={"kid": "rsa-1"},
                ),
                "unknown kid": idp.token(kid="rsa-2"),
            }
            for reason, token in rejected.items():
                response = await status(token)
                assert response.status_code == 401, reason
                assert "invalid token" in response.json()["detail"], reason
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), reason

            missing = await status(idp.token(scope="submit"))
            assert missing.status_code == 403
            assert missing.json()["detail"] == "missing scope: read"
            created = await client.post(
                "/api/incidents",
                json={**BODY, "message": "from the agents' console"},
                headers={"Authorization": f"Bearer {idp.token(scope='submit')}"},
            )
            assert created.status_code == 202
        # Keys were cached: the JWKS was fetched once for both kids (plus the unknown one).
        assert len(jwks.received) <= 3
