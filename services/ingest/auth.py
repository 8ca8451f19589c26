"""Who is calling ingest, and may they: API keys (hashed) and the identity provider's JWTs.

With no key and no issuer configured the API is open (development and tests); production
refuses to start that way (settings).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.ingest.keys import SCOPES, Scope, hash_key
from services.ingest.ratelimit import MovingWindow
from services.ingest.settings import IngestSettings

# Asymmetric only: a symmetric or "none" token could be forged by anyone holding the JWKS.
JWT_ALGORITHMS = ["RS256", "ES256"]
CHALLENGE = 'Bearer realm="incidentflow"'

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An ingest API key, or a JWT from the organisation's identity provider.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="An ingest API key."
)


@dataclass(frozen=True)
class Principal:
    """The caller: ``name`` scopes idempotency keys, ``rate_key`` its rate limit."""

    name: str
    scopes: frozenset[Scope]
    rate_key: str


def unauthorized(reason: str) -> HTTPException:
    """A 401 with ``reason``, one of this module's fixed texts: nothing the caller sent is
    echoed (a token's ``kid`` with a line break in it made the header invalid, a 500)."""
    return HTTPException(
        401,
        detail=f"authentication required: {reason}",
        headers={"WWW-Authenticate": f'{CHALLENGE}, error_description="{reason}"'},
    )


def _token_problem(error: jwt.PyJWTError) -> str:
    """What was wrong with a token, in words of our own."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "invalid token: expired"
    if isinstance(error, jwt.InvalidAudienceError | jwt.InvalidIssuerError):
        return "invalid token: not issued for this API"
    if isinstance(error, jwt.PyJWKClientError):
        return "invalid token: signing key not known"
    return "invalid token"


class Authenticator:
    def __init__(self, settings: IngestSettings) -> None:
        self._keys = settings.api_keys
        self._key_secret = (
            settings.api_key_secret.get_secret_value() if settings.api_key_secret else None
        )
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        # Keys cached by kid; the JWKS is fetched again only for a kid it has not seen.
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300, timeout=5)
            if settings.jwt_jwks_url
            else None
        )
        self.enabled = settings.auth_enabled
        # Failed authentications per client address: past the limit, refused before any key
        # is checked, so guessing keys or tokens costs the guesser time, not us CPU.
        self._failures = MovingWindow(settings.auth_failures_per_client)

    async def authenticate(self, credential: str | None, client: str) -> Principal:
        if not self.enabled:
            return Principal("anonymous", frozenset(SCOPES), f"client:{client}")
        if (wait := self._failures.retry_after(client)) is not None:
            raise HTTPException(
                429,
                "too many failed authentications from this address",
                headers={"Retry-After": str(wait)},
            )
        try:
            if not credential:
                raise unauthorized("send an API key (X-API-Key or Authorization: Bearer)")
            if self._jwks is not None and credential.count(".") == 2:
                return await self._from_jwt(credential)
            return self._from_api_key(credential)
        except HTTPException as refused:
            if refused.status_code == 401:
                self._failures.hit(client)
            raise

    def _from_api_key(self, key: str) -> Principal:
        digest = hash_key(key, self._key_secret)
        found = None
        for candidate in self._keys:  # compare with every entry: the time says nothing
            if hmac.compare_digest(candidate.digest, digest):
                found = candidate
        if found is None:
            raise unauthorized("unknown API key")
        return Principal(f"key:{found.name}", found.scopes, f"key:{found.name}")

    async def _from_jwt(self, token: str) -> Principal:
        try:
            # PyJWKClient fetches over blocking urllib: keep it off the event loop.
            claims = await asyncio.to_thread(self._verify, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise HTTPException(
                503, "identity provider unreachable, try again", headers={"Retry-After": "5"}
            ) from exc
        except jwt.PyJWTError as exc:
            raise unauthorized(_token_problem(exc)) from exc
        subject = str(claims.get("sub") or claims.get("azp") or claims.get("client_id") or "")
        if not subject:
            raise unauthorized("invalid token: no subject")
        name = f"jwt:{subject}"
        return Principal(name, token_scopes(claims), name)

    def _verify(self, token: str) -> dict[str, Any]:
        assert self._jwks is not None
        key = self._jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key,
            algorithms=JWT_ALGORITHMS,
            audience=self._audience,
            issuer=self._issuer,
            options={"require": ["exp", "iss", "aud"]},
        )


def token_scopes(claims: dict[str, Any]) -> frozenset[Scope]:
    """``scope`` (space-separated, RFC 8693) or ``scp`` (a list, or a string: Azure, Okta)."""
    raw = claims.get("scope") or claims.get("scp") or ""
    names = raw.split() if isinstance(raw, str) else [str(s) for s in raw or []]
    return frozenset(s for s in SCOPES if s in names)


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, who must hold ``scope``."""

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        api_key: Annotated[str | None, Depends(api_key_scheme)],
    ) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        credential = api_key or (bearer.credentials if bearer else None)
        client = request.client.host if request.client else "unknown"
        principal = await authenticator.authenticate(credential, client)
        if scope not in principal.scopes:
            raise HTTPException(403, f"missing scope: {scope}")
        return principal

    return dependency
