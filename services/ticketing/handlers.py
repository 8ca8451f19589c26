"""Ticketing's subscriber: incident.classified → one ticket → incident.ticketed."""

from __future__ import annotations

import logging

from contracts.events import IncidentClassified, IncidentTicketed, derived_event_id
from contracts.topology import TICKETING_CLASSIFIED
from incidentflow.audit import record_handled
from incidentflow.messaging import publish_event
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
    @runtime.broker.subscriber(TICKETING_CLASSIFIED.queue, TICKETING_CLASSIFIED.source)
    async def on_incident_classified(event: IncidentClassified) -> None:
        async with runtime.pool.acquire() as conn:
            ticket_id = await store.existing_ticket(conn, event.incident_id)
        fallback = False
        if ticket_id is None:  # a redelivery of a ticketed incident opens nothing
            ticket_id, fallback = await open_ticket(tickets, ticket_request(event))
        async with runtime.pool.acquire() as conn, conn.transaction():
            await record_handled(conn, runtime.name, event)
            ticket_id, fallback = await store.save_ticket(
                conn, event.incident_id, ticket_id, fallback
            )
        ticketed = IncidentTicketed(
            **event.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(event.incident_id, "ticketed"),
            ticket_id=ticket_id,
            ticket_fallback=fallback,
        )
        await publish_event(runtime.broker, ticketed)
        log.info(
            "incident ticketed",
            extra={"incident_id": str(event.incident_id), "fallback": fallback},
        )
