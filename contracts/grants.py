"""What each service may do in Postgres and on the broker, and nothing more.

`incidentflow provision-roles` creates a Postgres role and a RabbitMQ user per service from
this table (docs/security.md, "Least privilege"). A service's statements live in its
``store.py`` (and ``incidentflow/audit.py``, which every consumer uses): when one gains a
statement or a migration adds a table, its grants here change with it; the end-to-end tests
run every service under these grants, so a missing one fails them.

Nobody but the schema owner (migrations, the operators' CLI) may UPDATE, DELETE or TRUNCATE
``audit_events``: the audit trail is append-only by grants as well as by trigger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.events import (
    Envelope,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentMessageReceived,
    IncidentReceived,
    IncidentScored,
    IncidentTicketed,
    ReminderDue,
    ReminderRequested,
    ReminderTick,
)
from contracts.topology import WORK_ROUTES, Route

# Every consumer records what it handled; alembic_version tells a service the schema's revision.
_AUDIT = {"audit_events": "SELECT, INSERT", "alembic_version": "SELECT"}
_AUDIT_SEQUENCES = ("audit_events_id_seq",)


@dataclass(frozen=True)
class ServiceGrants:
    """One service's database privileges and broker permissions."""

    service: str
    # table → privileges on the whole table ("SELECT, INSERT")
    tables: dict[str, str]
    # table → the only columns the service may UPDATE
    updates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sequences: tuple[str, ...] = ()
    # events it publishes on incidentflow.events, and those it sends through the delay levels
    publishes: tuple[type[Envelope], ...] = ()
    delays: tuple[type[Envelope], ...] = ()
    # events it binds a queue of its own to that are not work routes (ingest's answers)
    also_binds: tuple[type[Envelope], ...] = ()

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(route for route in WORK_ROUTES if route.service == self.service)

    @property
    def binds(self) -> tuple[type[Envelope], ...]:
        return tuple(r.event for r in self.routes if not r.delayed) + self.also_binds

    @property
    def queue_prefix(self) -> str:
        """Every queue a service declares is named ``<service>.…`` (contracts/topology.py)."""
        return f"{self.service}."


SERVICE_GRANTS: tuple[ServiceGrants, ...] = (
    ServiceGrants(
        "ingest",
        tables={
            **_AUDIT,
            "incidents": "SELECT, INSERT",
            # The relay locks rows FOR UPDATE and deletes them once the broker has them.
            "outbox": "SELECT, INSERT, UPDATE, DELETE",
            "idempotency_keys": "SELECT, INSERT",
            "incident_reports": "SELECT, INSERT",
            "classification_corrections": "SELECT, INSERT",
            "notifications": "SELECT",
            "reminders": "SELECT",
            # mail and texts in (services/ingest/intake/)
            "incident_messages": "SELECT, INSERT",
            "inbound_receipts": "SELECT, INSERT",
        },
        updates={
            "incidents": (
                "repeat_reports",
                "status",
                "resolved_at",
                "classification",
                "needs_review",
            ),
            "reminders": ("state", "updated_at"),
        },
        sequences=(
            *_AUDIT_SEQUENCES,
            "outbox_id_seq",
            "incident_reports_id_seq",
            "classification_corrections_id_seq",
            "incident_messages_id_seq",
        ),
        publishes=(IncidentReceived, IncidentMessageReceived),
        also_binds=(IncidentAcknowledged,),
    ),
    ServiceGrants(
        "sentiment",
        tables={**_AUDIT, "incidents": "SELECT", "incident_messages": "SELECT"},
        updates={
            "incidents": ("sentiment", "polarity", "language", "scored_at", "sentiment_trend"),
            "incident_messages": ("sentiment", "polarity", "language", "scored_at"),
        },
        sequences=_AUDIT_SEQUENCES,
        publishes=(IncidentScored,),
    ),
    ServiceGrants(
        "classifier",
        tables={**_AUDIT, "incidents": "SELECT"},
        updates={
            "incidents": (
                "classification",
                "confidence",
                "reason",
                "classifier_model",
                "needs_review",
                "classified_at",
            )
        },
        sequences=_AUDIT_SEQUENCES,
        publishes=(IncidentClassified,),
    ),
    ServiceGrants(
        "ticketing",
        tables={
            **_AUDIT,
            "incidents": "SELECT",
            "local_tickets": "SELECT, INSERT",
            "local_ticket_comments": "SELECT, INSERT",
        },
        updates={
            "incidents": ("ticket_id", "ticket_fallback", "ticketed_at", "ticket_reconcile_after")
        },
        sequences=(
            *_AUDIT_SEQUENCES,
            "local_tickets_number_seq",
            "local_ticket_comments_id_seq",
        ),
        publishes=(IncidentTicketed,),
    ),
    ServiceGrants(
        "notifier",
        tables={
            **_AUDIT,
            "notifications": "SELECT, INSERT, UPDATE",
            "incidents": "SELECT",
            "reminders": "SELECT",
        },
        updates={
            "incidents": ("acknowledged_at", "reminder_sent"),
            "reminders": ("state", "updated_at"),
        },
        sequences=_AUDIT_SEQUENCES,
        publishes=(IncidentAcknowledged,),
    ),
    ServiceGrants(
        "reminder",
        tables={
            **_AUDIT,
            "reminders": "SELECT, INSERT",
            "incidents": "SELECT",
            "customer_follow_ups": "SELECT, INSERT",
        },
        updates={
            "reminders": ("state", "attempts", "updated_at", "due_at"),
            "customer_follow_ups": ("followed_up_at",),
        },
        sequences=(*_AUDIT_SEQUENCES, "reminders_id_seq"),
        publishes=(ReminderRequested,),
        delays=(ReminderTick, ReminderDue),
    ),
)

SERVICES: tuple[str, ...] = tuple(g.service for g in SERVICE_GRANTS)


def grants_of(service: str) -> ServiceGrants:
    for grants in SERVICE_GRANTS:
        if grants.service == service:
            return grants
    raise KeyError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
