"""The support console: ``uvicorn services.console.app:app --port 8010``.

Server-rendered pages for the people who run support, on a port of their own, never the
customer-facing one (docs/adr/0055). Reads go through ingest's store, the code the API reads
with; every change goes through the same store functions as the API's and is audited with the
signed-in operator's name.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from incidentflow.db import create_pool
from incidentflow.logs import configure_logging
from services.console import deadletters, overview, pages
from services.console.session import SignInRequired
from services.console.settings import ConsoleSettings
from services.ingest.auth import Authenticator
from services.ingest.settings import IngestSettings

log = logging.getLogger("incidentflow.console")

HERE = Path(__file__).parent
SESSION_COOKIE = "incidentflow_console"
SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(
    settings: ConsoleSettings | None = None, access: IngestSettings | None = None
) -> FastAPI:
    """``access``: who may sign in (the API's keys and identity provider)."""
    settings = settings or ConsoleSettings()
    access = access or IngestSettings()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging("console", settings.log_level)
        if not access.auth_enabled:
            log.warning("no INGEST_API_KEYS and no INGEST_JWT_ISSUER: the console is open")
        state["pool"] = await create_pool(settings.database_url, settings.db_pool_size)
        try:
            yield
        finally:
            await state["pool"].close()

    app = FastAPI(
        title="incidentflow console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    secret = (
        settings.session_secret.get_secret_value()
        if settings.session_secret
        else secrets.token_urlsafe(32)
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_seconds,
        same_site="strict",
        https_only=settings.cookies_secure,
    )

    @app.middleware("http")
    async def protective_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        # Scripts, styles and forms from this origin only, and never inside another's frame.
        response.headers["Content-Security-Policy"] = SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    app.state.settings = settings
    app.state.authenticator = Authenticator(access)
    # Autoescape for every template: Starlette's default escapes only names ending .html, and
    # these end .html.j2; what customers wrote is shown on every page.
    app.state.templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    )
    app.state.pool = lambda: state["pool"]
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(overview.router)
    app.include_router(deadletters.router)

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _: SignInRequired) -> Response:
        return RedirectResponse(f"/sign-in?next={request.url.path}", status_code=303)

    async def live() -> dict[str, str]:
        return {"status": "live"}

    async def ready() -> JSONResponse:
        try:
            async with state["pool"].acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except (KeyError, OSError, asyncpg.PostgresError, TimeoutError):
            return JSONResponse({"status": "not ready"}, 503)
        return JSONResponse({"status": "ready"})

    app.add_api_route("/health/live", live, methods=["GET"])
    app.add_api_route("/health/ready", ready, methods=["GET"])
    app.add_api_route("/favicon.ico", lambda: HTMLResponse(status_code=204), methods=["GET"])
    return app


app = create_app()
