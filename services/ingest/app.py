"""The ingest gateway: the HTTP API for customers' front ends and operators.

``uvicorn services.ingest.app:app``. A plain FastAPI app that starts and stops its RabbitMQ
broker in its lifespan (FastStream's FastAPI integration is deprecated since 0.7.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from contracts.events import Category, IncidentAcknowledged, IncidentReceived
from contracts.topology import EVENTS, acknowledgement_queue, passive
from incidentflow.asyncapi import service_document
from incidentflow.db import create_pool, migrate
from incidentflow.heap import freeze_startup_heap
from incidentflow.logs import configure_logging
from incidentflow.messaging import make_broker
from incidentflow.metrics import instrument_ingest
from incidentflow.tracing import current_trace_carrier
from services.ingest import store
from services.ingest.auth import Authenticator, Principal, require
from services.ingest.bodylimit import RequestBodyGuard
from services.ingest.cursors import decode_cursor, encode_cursor
from services.ingest.deadletters import dead_letter_counts
from services.ingest.docs import serve_docs
from services.ingest.intake import smtp as smtp_intake
from services.ingest.intake.imap import reading_mailbox
from services.ingest.intake.receive import Intake
from services.ingest.intake.twilio import add_twilio_webhook
from services.ingest.internal import internal_app, serving
from services.ingest.keys import Scope
from services.ingest.ratelimit import MovingWindow
from services.ingest.relay import OutboxRelay
from services.ingest.schemas import (
    CorrectionRequest,
    IncidentCreated,
    IncidentPage,
    IncidentRequest,
    IncidentState,
    IncidentSummary,
    Problem,
    Stats,
    StatusChange,
    ValidationProblem,
    storable_text,
)
from services.ingest.settings import IngestSettings
from services.ingest.waiters import Waiters

log = logging.getLogger("incidentflow.ingest")

OPENAPI_URL = "/openapi.json"

PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
RETRY_AFTER_SECONDS = "5"

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
# Documented on every operation, so clients (and schemathesis) know every answer they can get.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No credential, or not a valid one"},
    403: {"model": Problem, "description": "The credential lacks the scope named"},
    413: {"model": Problem, "description": "Request body larger than INGEST_MAX_BODY_BYTES"},
    422: {"model": ValidationProblem, "description": "Invalid input: each field and the reason"},
    429: {"model": Problem, "description": "Rate limit reached", "headers": _RETRY_AFTER},
    503: {"model": Problem, "description": "Try again later", "headers": _RETRY_AFTER},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such incident"}
}
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def _printable(value: object) -> str | int:
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "replace").decode("utf-8")


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [_printable(part) for part in error["loc"]],
            "msg": _printable(error["msg"]),
            "type": error["type"],
        }
        for error in exc.errors()
    ]


def too_many(retry_after: int, what: str) -> HTTPException:
    return HTTPException(
        429,
        f"rate limit of {what} reached, retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def wait_window(prefer: str | None, settings: IngestSettings) -> float:
    """RFC 7240 ``Prefer: wait=N``, capped; the configured window when absent."""
    match = PREFER_WAIT.search(prefer or "")
    wanted = float(match.group(1)) if match else settings.wait_seconds
    return min(wanted, settings.max_wait_seconds)


# store.accepted_summary of an incident stored a moment ago: nothing has happened to it yet.
JUST_STORED: Mapping[str, Any] = MappingProxyType(
    {
        "ticket_id": None,
        "status": "open",
        "classification": None,
        "confidence": None,
        "sentiment": None,
        "acknowledged_at": None,
        "ack_channels": [],
    }
)


def summary_message(state: Mapping[str, Any], channels: list[str]) -> str:
    if state.get("acknowledged_at") is None:
        return "Incident received and being processed. Follow its state at the Location URL."
    names = " and ".join(c.upper() if c == "sms" else c for c in channels) or "email"
    return (
        "Incident received and ticket created. "
        f"Sentiment: {state['sentiment']}. Acknowledgments sent via {names}."
    )


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    broker = make_broker(settings.rabbitmq_url, settings.prefetch)
    waiters = Waiters()
    instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    per_caller = MovingWindow(settings.rate_limit_per_key)
    per_customer = MovingWindow(settings.rate_limit_per_customer)

    @broker.subscriber(
        acknowledgement_queue(instance), EVENTS if settings.declare_topology else passive(EVENTS)
    )
    async def on_acknowledged(event: IncidentAcknowledged) -> None:
        waiters.resolve(event.incident_id)

    state: dict[str, Any] = {}

    async def keep_broker_started() -> None:
        # Ingest serves HTTP with or without the broker: the outbox holds events meanwhile.
        while True:
            try:
                await broker.start()
                return
            except Exception as exc:
                log.warning("broker unavailable, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(2)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging("ingest", settings.log_level)
        if not settings.auth_enabled:
            log.warning("no INGEST_API_KEYS and no INGEST_JWT_ISSUER: the API is open")
        if settings.migrate_on_start:
            await migrate(settings.database_url)
        pool = await create_pool(settings.database_url, settings.db_pool_size)
        relay = OutboxRelay(
            pool,
            broker,
            settings.relay_interval_seconds,
            settings.relay_batch_size,
            linger=settings.relay_linger_seconds,
        )
        state.update(pool=pool, relay=relay)
        starter = asyncio.create_task(keep_broker_started())
        relay.start()
        try:
            async with contextlib.AsyncExitStack() as servers:
                if internal is not None and settings.health_port is not None:
                    await servers.enter_async_context(
                        serving(internal, settings.internal_host, settings.health_port)
                    )
                if settings.intake_smtp_port is not None:
                    await servers.enter_async_context(
                        smtp_intake.listening(
                            intake,
                            settings.intake_smtp_host,
                            settings.intake_smtp_port,
                            max_bytes=settings.intake_smtp_max_bytes,
                            own_address=settings.mail_from,
                            tls=smtp_intake.tls_context(
                                settings.intake_smtp_tls_cert, settings.intake_smtp_tls_key
                            ),
                        )
                    )
                if settings.intake_imap_url is not None:
                    await servers.enter_async_context(reading_mailbox(intake, settings))
                freeze_startup_heap()
                yield
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
            await relay.stop()
            await broker.stop()
            await pool.close()

    # Probes and metrics apart from the API (services/ingest/internal.py), when configured.
    internal = internal_app() if settings.health_port is not None else None
    app = FastAPI(
        title="incidentflow ingest",
        version="1.0.0",
        description=(
            "Customer messages in; scored, classified, ticketed, acknowledged out. "
            "Scope `submit` creates incidents, scope `read` reads them, scope `operate` "
            "changes them (every change audited with the caller)."
        ),
        lifespan=lifespan,
        # In production the API's map is not served anonymously: integrators read it on a
        # development or staging instance; a scanner of the public endpoint finds nothing.
        # /docs and /redoc with their assets served here, not from a CDN (services/ingest/docs.py).
        docs_url=None,
        redoc_url=None,
        openapi_url=None if settings.env == "production" else OPENAPI_URL,
        # FastAPI's own OpenTelemetry layer would add a second server span, spans around
        # dependencies and serialization, and OTel metrics and logs to every request, on top
        # of ours (instrument_ingest below): ~5 % of ingest's CPU per request, measured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    if settings.env != "production":
        serve_docs(app, OPENAPI_URL)
    app.state.authenticator = Authenticator(settings)
    app.add_middleware(RequestBodyGuard, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Idempotency-Key",
                "Prefer",
            ],
            expose_headers=["Location", "Retry-After"],
        )

    def pool() -> asyncpg.Pool:
        return state["pool"]

    def relay() -> OutboxRelay:
        return state["relay"]  # type: ignore[no-any-return]

    def caller(scope: Scope) -> Any:
        authorised = Depends(require(scope))

        async def within_rate(principal: Principal = authorised) -> Principal:
            retry_after = per_caller.hit(principal.rate_key)
            if retry_after is not None:
                raise too_many(retry_after, settings.rate_limit_per_key + " per caller")
            return principal

        return Depends(within_rate)

    # Mail and texts in (services/ingest/intake/): the same store and outbox as the API's.
    intake = Intake(pool, lambda: relay().wake(), settings)
    add_twilio_webhook(app, intake, settings)

    submitter = caller("submit")
    # Reading every customer's incidents and changing them are separate grants.
    reader = caller("read")
    operator = caller("operate")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Field and reason only: echoing the input back could echo text that is not even
        # encodable (a lone surrogate made FastAPI's own handler fail with a 500).
        return JSONResponse({"detail": validation_details(exc)}, status_code=422)

    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(OSError)
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable", extra={"error": repr(exc)})
        return JSONResponse(
            {"detail": "audit store unavailable, try again"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.post(
        "/api/incidents",
        status_code=201,
        response_model=IncidentCreated,
        response_model_exclude_unset=True,
        responses={
            200: {
                "model": IncidentCreated,
                "description": "Already reported (linked to that incident) or a repeated "
                "Idempotency-Key",
            },
            202: {"model": IncidentCreated, "description": "Accepted, still processing"},
            **ERROR_RESPONSES,
        },
    )
    async def create_incident(
        body: IncidentRequest,
        response: Response,
        principal: Principal = submitter,  # a local: Annotated[] would not resolve it
        prefer: Annotated[str | None, Header()] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=IDEMPOTENCY_KEY.pattern,
                description="Repeat a POST safely: the same key answers with the same incident",
            ),
        ] = None,
    ) -> IncidentCreated:
        if len(body.message) > settings.max_message_length:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "message"),
                        "msg": f"message is longer than {settings.max_message_length} characters",
                        "type": "string_too_long",
                    }
                ]
            )
        if relay().refused:
            # The broker refuses events (a full queue): storing more would only grow a
            # backlog nobody can drain. The caller keeps the message and retries.
            raise HTTPException(
                503,
                "the pipeline is full and refuses new incidents; nothing was stored, try again",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        retry_after = per_customer.hit(body.customer_id)
        if retry_after is not None:
            raise too_many(retry_after, settings.rate_limit_per_customer + " per customer")
        event = IncidentReceived(
            incident_id=uuid.uuid4(),
            customer_id=body.customer_id,
            channel=body.channel,
            message=body.message,
            email=str(body.email),
            phone=body.phone,
            created_at=datetime.now(UTC),
            # The request's trace, kept with the outbox row so the relay's publish continues it.
            trace=current_trace_carrier(),
        )
        request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        replayed = False
        async with pool().acquire() as conn:
            if idempotency_key is None:
                outcome = await record_report(conn, event, request_hash)
            else:
                async with conn.transaction():
                    await store.lock(conn, f"idempotency:{principal.name}:{idempotency_key}")
                    earlier = await store.idempotent_outcome(conn, principal.name, idempotency_key)
                    if earlier is not None and earlier.request_hash != request_hash:
                        raise RequestValidationError(
                            [
                                {
                                    "loc": ("header", "Idempotency-Key"),
                                    "msg": "this Idempotency-Key was used with a different "
                                    "request body",
                                    "type": "idempotency_key_reused",
                                }
                            ]
                        )
                    replayed = earlier is not None
                    if earlier is None:
                        outcome = await record_report(conn, event, request_hash)
                        await store.remember_outcome(conn, principal.name, idempotency_key, outcome)
                    else:
                        outcome = earlier
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        elif not outcome.duplicate:
            log.info(
                "incident received",
                extra={"incident_id": str(event.incident_id), "channel": event.channel},
            )
            window = wait_window(prefer, settings)
            if window == 0:
                relay().wake()
                # Answered at acceptance: the incident as just stored, not read back.
                return created_answer(outcome, JUST_STORED, response)
            # Registered before the relay is woken, so the acknowledgement cannot come first;
            # after the commit, so a failed insert leaves no waiter behind.
            acknowledged = waiters.register(event.incident_id)
            relay().wake()
            await waiters.wait(event.incident_id, acknowledged, window)
        else:
            log.info(
                "repeat report linked",
                extra={"incident_id": str(outcome.incident_id), "channel": event.channel},
            )
        return await created_response(outcome, response)

    async def record_report(
        conn: asyncpg.Connection, event: IncidentReceived, request_hash: str
    ) -> store.IdempotentOutcome:
        """A new incident, or the repeat of the customer's open one linked to it. A new one
        is one statement: in its own transaction, or the caller's."""
        existing = await store.record_report(
            conn, event, store.fingerprint(event.message), settings.duplicate_window_seconds
        )
        if existing is None:
            return store.IdempotentOutcome(request_hash, event.incident_id, duplicate=False)
        async with conn.transaction():
            await store.record_repeat_report(conn, existing, event)
        return store.IdempotentOutcome(request_hash, existing, duplicate=True)

    async def created_response(
        outcome: store.IdempotentOutcome, response: Response
    ) -> IncidentCreated:
        async with pool().acquire() as conn:
            details = await store.accepted_summary(conn, outcome.incident_id)
        assert details is not None
        return created_answer(outcome, details, response)

    def created_answer(
        outcome: store.IdempotentOutcome, details: Mapping[str, Any], response: Response
    ) -> IncidentCreated:
        message = summary_message(details, details["ack_channels"])
        if outcome.duplicate:
            response.status_code = 200
            message = "Already reported: linked to your open incident. " + message
        elif details["acknowledged_at"] is None:
            response.status_code = 202
            response.headers["Location"] = f"/api/incidents/{outcome.incident_id}"
        fields: dict[str, Any] = {
            "incident_id": outcome.incident_id,
            "ticket_id": details["ticket_id"],
            "status": details["status"],
            "classification": details["classification"],
            "confidence": details["confidence"],
            "message": message,
        }
        if outcome.duplicate:
            # Only here: a new incident answers with exactly the seed's fields.
            fields |= {"duplicate": True, "duplicate_of": outcome.incident_id}
        return IncidentCreated(**fields)

    @app.get(
        "/api/incidents/{incident_id}",
        response_model=IncidentState,
        responses={**ERROR_RESPONSES, **NOT_FOUND},
        dependencies=[reader],
    )
    async def get_incident(incident_id: uuid.UUID) -> dict[str, Any]:
        async with pool().acquire() as conn:
            details = await store.incident_details(conn, incident_id)
        if details is None:
            raise HTTPException(404, f"incident {incident_id} not found")
        return details

    @app.get(
        "/api/incidents",
        response_model=IncidentPage,
        responses=ERROR_RESPONSES,
        dependencies=[reader],
    )
    async def list_incidents(
        status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
        category: Category | None = None,
        customer_id: Annotated[
            str | None, Query(max_length=64), AfterValidator(storable_text)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> IncidentPage:
        after = decode_cursor(cursor) if cursor else None
        async with pool().acquire() as conn:
            rows = await store.list_incidents(
                conn,
                status=status,
                category=category,
                customer_id=customer_id,
                after=after,
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            encode_cursor(rows[-1]["created_at"], rows[-1]["incident_id"]) if more else None
        )
        return IncidentPage(
            items=[IncidentSummary.model_validate(r) for r in rows], next_cursor=next_cursor
        )

    @app.patch(
        "/api/incidents/{incident_id}",
        response_model=IncidentState,
        responses={**ERROR_RESPONSES, **NOT_FOUND},
    )
    async def change_status(
        incident_id: uuid.UUID, change: StatusChange, principal: Principal = operator
    ) -> dict[str, Any]:
        async with pool().acquire() as conn, conn.transaction():
            if not await store.set_status(conn, incident_id, change.status, principal.name):
                raise HTTPException(404, f"incident {incident_id} not found")
            details = await store.incident_details(conn, incident_id)
        log.info(
            "incident status changed",
            extra={"incident_id": str(incident_id), "status": change.status},
        )
        assert details is not None
        return details

    @app.post(
        "/api/incidents/{incident_id}/corrections",
        response_model=IncidentState,
        responses={**ERROR_RESPONSES, **NOT_FOUND},
    )
    async def correct_category(
        incident_id: uuid.UUID, correction: CorrectionRequest, principal: Principal = operator
    ) -> dict[str, Any]:
        async with pool().acquire() as conn, conn.transaction():
            if not await store.correct_classification(
                conn, incident_id, correction.category, principal.name, correction.note
            ):
                raise HTTPException(404, f"incident {incident_id} not found")
            details = await store.incident_details(conn, incident_id)
        log.info(
            "classification corrected",
            extra={"incident_id": str(incident_id), "category": correction.category},
        )
        assert details is not None
        return details

    @app.get("/api/stats", response_model=Stats, responses=ERROR_RESPONSES, dependencies=[reader])
    async def stats() -> dict[str, Any]:
        async with pool().acquire() as conn:
            counts = await store.stats(conn)
        counts["dead_letters"] = await dead_letter_counts(settings.rabbitmq_url)
        return counts

    async def live() -> dict[str, str]:
        return {"status": "live"}

    async def ready() -> JSONResponse:
        ok = await broker.ping(timeout=2) and relay().running
        try:
            async with pool().acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError):
            ok = False
        return JSONResponse({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    async def asyncapi() -> dict[str, Any]:
        """What ingest consumes and publishes on the broker (incidentflow/asyncapi.py)."""
        return service_document("ingest", broker)

    # Probes, metrics and the AsyncAPI document: on the internal port when there is one, and
    # on the public port except in production (services/ingest/internal.py).
    health_apps = [internal] if internal is not None else []
    if settings.env != "production":
        health_apps.append(app)
    for target in health_apps:
        target.add_api_route("/health/live", live, methods=["GET"], include_in_schema=False)
        target.add_api_route("/health/ready", ready, methods=["GET"], include_in_schema=False)
        target.add_api_route("/asyncapi", asyncapi, methods=["GET"], include_in_schema=False)
    # Last, so its middleware is outermost: it times and traces every answer.
    instrument_ingest(app, broker, settings, metrics_on=health_apps)
    return app


app = create_app()
