"""The ingest gateway: the HTTP API for customers' front ends and operators.

``uvicorn services.ingest.app:app``. A plain FastAPI app that starts and stops its RabbitMQ
broker in its lifespan (FastStream's FastAPI integration is deprecated since 0.7.3).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from contracts.events import Category, IncidentAcknowledged, IncidentReceived
from contracts.topology import EVENTS, acknowledgement_queue
from incidentflow.db import create_pool, migrate
from incidentflow.logs import configure_logging
from incidentflow.messaging import make_broker
from services.ingest import store
from services.ingest.relay import OutboxRelay
from services.ingest.schemas import (
    CorrectionRequest,
    IncidentCreated,
    IncidentPage,
    IncidentRequest,
    IncidentState,
    IncidentSummary,
    Stats,
    StatusChange,
)
from services.ingest.settings import IngestSettings
from services.ingest.waiters import Waiters

log = logging.getLogger("incidentflow.ingest")

PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
RETRY_AFTER_SECONDS = "5"


def wait_window(prefer: str | None, settings: IngestSettings) -> float:
    """RFC 7240 ``Prefer: wait=N``, capped; the configured window when absent."""
    match = PREFER_WAIT.search(prefer or "")
    wanted = float(match.group(1)) if match else settings.wait_seconds
    return min(wanted, settings.max_wait_seconds)


def encode_cursor(created_at: datetime, incident_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{incident_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "invalid cursor", "type": "value_error"}]
        ) from exc


def summary_message(state: dict[str, Any], channels: list[str]) -> str:
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

    @broker.subscriber(acknowledgement_queue(instance), EVENTS)
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
        if settings.migrate_on_start:
            await migrate(settings.database_url)
        pool = await create_pool(settings.database_url, settings.db_pool_size)
        relay = OutboxRelay(
            pool, broker, settings.relay_interval_seconds, settings.relay_batch_size
        )
        state.update(pool=pool, relay=relay)
        starter = asyncio.create_task(keep_broker_started())
        relay.start()
        try:
            yield
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
            await relay.stop()
            await broker.stop()
            await pool.close()

    app = FastAPI(
        title="incidentflow ingest",
        version="1.0.0",
        description="Customer messages in; scored, classified, ticketed, acknowledged out.",
        lifespan=lifespan,
    )

    def pool() -> asyncpg.Pool:
        return state["pool"]

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
        responses={202: {"model": IncidentCreated, "description": "Accepted, still processing"}},
    )
    async def create_incident(
        body: IncidentRequest,
        response: Response,
        prefer: Annotated[str | None, Header()] = None,
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
        event = IncidentReceived(
            incident_id=uuid.uuid4(),
            customer_id=body.customer_id,
            channel=body.channel,
            message=body.message,
            email=str(body.email),
            phone=body.phone,
            created_at=datetime.now(UTC),
        )
        async with pool().acquire() as conn, conn.transaction():
            await store.record_incident(conn, event)
        # Registered before the relay is woken, so the acknowledgement cannot come first;
        # after the commit, so a failed insert leaves no waiter behind.
        acknowledged = waiters.register(event.incident_id)
        state["relay"].wake()
        log.info(
            "incident received",
            extra={"incident_id": str(event.incident_id), "channel": event.channel},
        )
        await waiters.wait(event.incident_id, acknowledged, wait_window(prefer, settings))
        async with pool().acquire() as conn:
            details = await store.incident_details(conn, event.incident_id)
        assert details is not None
        channels = [n["channel"] for n in details["notifications"] if n["kind"] == "ack"]
        if details["acknowledged_at"] is None:
            response.status_code = 202
            response.headers["Location"] = f"/api/incidents/{event.incident_id}"
        return IncidentCreated(
            incident_id=event.incident_id,
            ticket_id=details["ticket_id"],
            status=details["status"],
            classification=details["classification"],
            confidence=details["confidence"],
            message=summary_message(details, channels),
        )

    @app.get("/api/incidents/{incident_id}", response_model=IncidentState)
    async def get_incident(incident_id: uuid.UUID) -> dict[str, Any]:
        async with pool().acquire() as conn:
            details = await store.incident_details(conn, incident_id)
        if details is None:
            raise HTTPException(404, f"incident {incident_id} not found")
        return details

    @app.get("/api/incidents", response_model=IncidentPage)
    async def list_incidents(
        status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
        category: Category | None = None,
        customer_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: str | None = None,
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

    @app.patch("/api/incidents/{incident_id}", response_model=IncidentState)
    async def change_status(incident_id: uuid.UUID, change: StatusChange) -> dict[str, Any]:
        async with pool().acquire() as conn, conn.transaction():
            if not await store.set_status(conn, incident_id, change.status):
                raise HTTPException(404, f"incident {incident_id} not found")
            details = await store.incident_details(conn, incident_id)
        log.info(
            "incident status changed",
            extra={"incident_id": str(incident_id), "status": change.status},
        )
        assert details is not None
        return details

    @app.post("/api/incidents/{incident_id}/corrections", response_model=IncidentState)
    async def correct_category(
        incident_id: uuid.UUID, correction: CorrectionRequest
    ) -> dict[str, Any]:
        async with pool().acquire() as conn, conn.transaction():
            if not await store.correct_classification(
                conn, incident_id, correction.category, correction.agent, correction.note
            ):
                raise HTTPException(404, f"incident {incident_id} not found")
            details = await store.incident_details(conn, incident_id)
        log.info(
            "classification corrected",
            extra={"incident_id": str(incident_id), "category": correction.category},
        )
        assert details is not None
        return details

    @app.get("/api/stats", response_model=Stats)
    async def stats() -> dict[str, Any]:
        async with pool().acquire() as conn:
            return await store.stats(conn)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        ok = await broker.ping(timeout=2)
        try:
            async with pool().acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError):
            ok = False
        return JSONResponse({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    return app


app = create_app()
