"""Ticketing's subscribers: incident.classified → one ticket → incident.ticketed; and the
customer's later messages (incident.message_received) added to that ticket as comments."""

from __future__ import annotations

import logging

import asyncpg

from contracts.events import (
    IncidentClassified,
    IncidentMessageReceived,
    IncidentTicketed,
    derived_event_id,
)
from contracts.topology import TICKETING_CLASSIFIED, TICKETING_MESSAGE
from incidentflow.audit import record_handled
from incidentflow.batching import Batcher
from incidentflow.service import ServiceRuntime
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

    async def announce(event: IncidentClassified, ticket_id: str, fallback: bool) -> None:
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

    @runtime.consume(TICKETING_CLASSIFIED)
    async def on_incident_classified(event: IncidentClassified) -> None:
        opened = await ticket(event, await existing.submit(event.incident_id))
        stored = await saved.submit(opened)
        if stored is None:
            raise LookupError(f"incident {event.incident_id} not found")
        await announce(event, *stored)

    async def on_batch(events: list[IncidentClassified]) -> None:
        """A batch's events together: one read of their tickets, the missing ones opened
        concurrently (GuardedTicketSystem bounds the calls to the ticket system, as for the
        events of a batch handled one by one), one write, then each published and logged
        under its own incident's trace."""
        found = await existing.submit_all([event.incident_id for event in events])
        opened = await each_traced(
            (event.trace, ticket(event, ticket_id))
            for event, ticket_id in zip(events, found, strict=True)
        )
        saved_tickets = await saved.submit_all(opened)
        if None in saved_tickets:
            # Before anything is published: the event by event way then retries or
            # dead-letters the missing incident alone.
            raise LookupError("an incident of the batch was not found")
        await each_traced(
            (event.trace, announce(event, *stored))
            for event, stored in zip(events, saved_tickets, strict=True)
            if stored is not None
        )

    runtime.handle_batches(TICKETING_CLASSIFIED, IncidentClassified, on_batch)

    @runtime.consume(TICKETING_MESSAGE)
    async def on_message_received(event: IncidentMessageReceived) -> None:
        """The message as a comment on the incident's ticket. Before the incident has a real
        ticket (still being opened, or a fallback id the reconciler has not replaced yet)
        this raises, and the runtime retries the event with back-off."""
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
