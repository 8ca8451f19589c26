"""Ticketing's subscriber: incident.classified → one ticket → incident.ticketed."""

from __future__ import annotations

import logging

import asyncpg

from contracts.events import IncidentClassified, IncidentTicketed, derived_event_id
from contracts.topology import TICKETING_CLASSIFIED
from incidentflow.batching import Batcher
from incidentflow.service import ServiceRuntime
from services.ticketing import store
from services.ticketing.policy import open_ticket
from services.ticketing.tickets import TicketRequest, TicketSystem

log = logging.getLogger("incidentflow.ticketing")


def ticket_request(event: IncidentClassified) -> TicketRequest:
    return TicketRequest(
        incident_id=event.incident_id,
        category=event.classification,
        message=event.message,
        customer_id=event.customer_id,
        sentiment=event.sentiment,
    )


def register(runtime: ServiceRuntime, tickets: TicketSystem) -> None:
    async def save(
        conn: asyncpg.Connection, ticketed: store.Ticketed
    ) -> list[tuple[str, bool] | None]:
        return await store.save_tickets(conn, runtime.name, ticketed)

    existing = Batcher.pooled(lambda: runtime.pool, store.existing_tickets)
    saved = Batcher.pooled(lambda: runtime.pool, save)

    @runtime.broker.subscriber(TICKETING_CLASSIFIED.queue, TICKETING_CLASSIFIED.source)
    async def on_incident_classified(event: IncidentClassified) -> None:
        ticket_id = await existing.submit(event.incident_id)
        fallback = False
        if ticket_id is None:  # a redelivery of a ticketed incident opens nothing
            ticket_id, fallback = await open_ticket(tickets, ticket_request(event))
        stored = await saved.submit((event, ticket_id, fallback))
        if stored is None:
            raise LookupError(f"incident {event.incident_id} not found")
        ticket_id, fallback = stored
        ticketed = IncidentTicketed(
            **event.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(event.incident_id, "ticketed"),
            ticket_id=ticket_id,
            ticket_fallback=fallback,
        )
        await runtime.events.publish(ticketed)
        log.info(
            "incident ticketed",
            extra={"incident_id": str(event.incident_id), "fallback": fallback},
        )
