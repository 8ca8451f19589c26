"""Ticketing's subscribers: incident.classified → one ticket → incident.ticketed; and the
customer's later messages (incident.message_received) added to that ticket as comments."""

from __future__ import annotations

import logging
from typing import cast

import asyncpg

from contracts.events import (
    IncidentClassified,
    IncidentMessageReceived,
    IncidentTicketed,
)
from contracts.topology import TICKETING_CLASSIFIED, TICKETING_MESSAGE
from incidentflow.audit import record_handled
from incidentflow.batching import Batcher
from incidentflow.service import ServiceRuntime
from incidentflow.steps import Delivery
from incidentflow.tracing import each_traced
from services.ticketing import store
from services.ticketing.policy import open_ticket
from services.ticketing.tickets import CommentRequest, TicketRequest, TicketSystem

log = logging.getLogger("incidentflow.ticketing")


def ticket_request(event: IncidentClassified) -> TicketRequest:
    return TicketRequest(
        incident_id=event.incident_id,
        category=event.classification,
        message=event.message,
        customer_id=event.customer_id,
        sentiment=event.sentiment,
        language=event.language,
    )


def register(runtime: ServiceRuntime, tickets: TicketSystem) -> None:
    async def save(
        conn: asyncpg.Connection, ticketed: store.Ticketed
    ) -> list[tuple[str, bool] | None]:
        return await store.save_tickets(conn, runtime.name, ticketed)

    existing = Batcher.pooled(lambda: runtime.pool, store.existing_tickets)
    saved = Batcher.pooled(lambda: runtime.pool, save)

    async def ticket(event: IncidentClassified, stored: str | None) -> store.Opened:
        """The incident's ticket: the one stored (a redelivery opens nothing), else one
        opened now, or the fallback id when the ticket system fails."""
        if stored is not None:
            return event, stored, False
        ticket_id, fallback = await open_ticket(tickets, ticket_request(event))
        return event, ticket_id, fallback

    @runtime.step(TICKETING_CLASSIFIED)
    async def open_tickets(deliveries: list[Delivery[IncidentClassified]]) -> None:
        """One read of the incidents' tickets, the missing ones opened concurrently, each
        under its incident's trace (GuardedTicketSystem bounds the calls to the ticket
        system), one write, each announced as incident.ticketed."""
        events = [delivery.event for delivery in deliveries]
        found = await existing.submit_all([event.incident_id for event in events])
        opened = await each_traced(
            (event.trace, ticket(event, ticket_id))
            for event, ticket_id in zip(events, found, strict=True)
        )
        stored = await saved.submit_all(opened)
        missing = [str(e.incident_id) for e, row in zip(events, stored, strict=True) if not row]
        if missing:
            # Before anything is published: the missing incident is retried or dead-lettered
            # on its own (a batch goes one event at a time after a failure).
            raise LookupError(f"incidents not found: {', '.join(missing)}")
        rows = cast(list[tuple[str, bool]], stored)
        for delivery, (ticket_id, fallback) in zip(deliveries, rows, strict=True):
            delivery.emit(
                delivery.event.next_step(
                    IncidentTicketed,
                    "ticketed",
                    ticket_id=ticket_id,
                    ticket_fallback=fallback,
                ),
                "incident ticketed",
                fallback=fallback,
            )

    @runtime.step(TICKETING_MESSAGE, whole_batches=False)
    async def add_comments(deliveries: list[Delivery[IncidentMessageReceived]]) -> None:
        """The message as a comment on the incident's ticket. Before the incident has a real
        ticket (still being opened, or a fallback id the reconciler has not replaced yet)
        this raises, and the runtime retries the event with back-off."""
        (delivery,) = deliveries
        event = delivery.event
        async with runtime.pool.acquire() as conn:
            if await store.handled_before(conn, runtime.name, event.event_id):
                return  # a redelivery: the comment is there (Jira has no idempotency key)
            ticket_id, fallback = await store.ticket_of(conn, event.incident_id)
        if ticket_id is None or fallback:
            raise TicketNotReady(f"incident {event.incident_id} has no ticket to comment on yet")
        await tickets.add_comment(
            CommentRequest(
                incident_id=event.incident_id,
                ticket_id=ticket_id,
                message_id=event.message_id,
                channel=event.channel,
                body=event.message,
            )
        )
        async with runtime.pool.acquire() as conn:
            await record_handled(conn, runtime.name, event, f"comment added to {ticket_id}")
        log.info("message added to the ticket", extra={"incident_id": str(event.incident_id)})


class TicketNotReady(RuntimeError):
    """The incident's ticket does not exist in the ticket system yet: retried later."""
