"""Who is signed in to the console, and may they: a signed session cookie holding the
operator's name and scopes (set at sign-in from an API key or a token, checked by ingest's own
Authenticator), and a CSRF token every form carries back."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request

from services.ingest.auth import Principal
from services.ingest.keys import SCOPES

OPERATOR = "operator"
SCOPES_KEY = "scopes"
CSRF = "csrf"


@dataclass(frozen=True)
class Operator:
    name: str
    scopes: frozenset[str]
    csrf: str
    # No key and no issuer configured: development, open to anyone (a banner says so).
    open: bool = False

    @property
    def may_operate(self) -> bool:
        return "operate" in self.scopes


class SignInRequired(Exception):
    """No session: the page answers with the sign-in page instead."""


def sign_in(request: Request, principal: Principal) -> None:
    """A new session for ``principal`` (the old one, if any, is dropped: no fixation)."""
    request.session.clear()
    request.session[OPERATOR] = principal.name
    request.session[SCOPES_KEY] = sorted(principal.scopes)
    request.session[CSRF] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    request.session.clear()


async def current_operator(request: Request) -> Operator:
    """The signed-in operator; SignInRequired when there is none (and sign-in is needed)."""
    if not request.app.state.authenticator.enabled:
        csrf = request.session.setdefault(CSRF, secrets.token_urlsafe(32))
        return Operator("anonymous", frozenset(SCOPES), csrf, open=True)
    name = request.session.get(OPERATOR)
    if not name:
        await _signed_in_by_proxy(request)
        name = request.session[OPERATOR]
    return Operator(name, frozenset(request.session.get(SCOPES_KEY, [])), request.session[CSRF])


async def _signed_in_by_proxy(request: Request) -> None:
    """A reverse proxy in front that authenticates people may pass each one's token (or key)
    as ``Authorization: Bearer``: checked like one typed into the sign-in page, it starts the
    session. Without one, SignInRequired."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise SignInRequired
    client = request.client.host if request.client else "unknown"
    principal = await request.app.state.authenticator.authenticate(credential.strip(), client)
    if not {"read", "operate"} & principal.scopes:
        raise HTTPException(403, "this token may neither read nor operate (scopes read, operate)")
    sign_in(request, principal)


def may_read(operator: Operator) -> None:
    if "read" not in operator.scopes and not operator.may_operate:
        raise HTTPException(403, "this key may not read incidents (scope read)")


def may_change(operator: Operator, csrf: str | None) -> None:
    """A change: the form's CSRF token must be this session's, and the operator may operate."""
    if not csrf or not hmac.compare_digest(csrf, operator.csrf):
        raise HTTPException(403, "the form's CSRF token is missing or not this session's")
    if not operator.may_operate:
        raise HTTPException(403, "this key may only read (scope operate needed)")
