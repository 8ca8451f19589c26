"""Incidents as the steps before a service would leave them, for tests of one service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from contracts.events import IncidentClassified, IncidentReceived, IncidentScored
from services.ingest import store as ingest_store


async def stored_incident(
    pool: asyncpg.Pool,
    message: str = "I was charged twice",
    trace: dict[str, str] | None = None,
    customer_id: str | None = None,
) -> IncidentReceived:
    """An incident as ingest stores it (row, outbox event, audit), its event returned."""
    event = IncidentReceived(
        incident_id=uuid.uuid4(),
        customer_id=customer_id or f"test-{uuid.uuid4().hex[:8]}",
        channel="email",
        message=message,
        email="a@b.co",
        created_at=datetime.now(UTC),
        trace=trace or {},
    )
    async with pool.acquire() as conn, conn.transaction():
        await ingest_store.record_report(conn, event, ingest_store.fingerprint(event.message), 0)
    return event


def scored_from(event: IncidentReceived) -> IncidentScored:
    return IncidentScored(
        **event.model_dump(exclude={"event_id", "occurred_at"}),
        event_id=uuid.uuid4(),
        sentiment="negative",
        polarity=-0.5,
    )


def classified_from(event: IncidentReceived) -> IncidentClassified:
    return IncidentClassified(
        **scored_from(event).model_dump(),
        classification="duplicate_payment",
        confidence=0.9,
        reason="charged twice",
        classifier_model="local",
    )
