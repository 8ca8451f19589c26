"""Initial schema: incidents, notifications, audit trail, reminders, outbox.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


STATEMENTS = [
    """
    CREATE TABLE incidents (
        id               uuid PRIMARY KEY,
        customer_id      text NOT NULL,
        channel          text NOT NULL,
        message          text NOT NULL,
        email            text NOT NULL,
        phone            text,
        classification   text,
        confidence       double precision,
        reason           text,
        classifier_model text,
        sentiment        text,
        polarity         double precision,
        ticket_id        text,
        ticket_fallback  boolean,
        status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
        created_at       timestamptz NOT NULL DEFAULT now(),
        scored_at        timestamptz,
        classified_at    timestamptz,
        ticketed_at      timestamptz,
        acknowledged_at  timestamptz,
        resolved_at      timestamptz,
        reminder_sent    boolean NOT NULL DEFAULT false
    )
    """,
    """
    CREATE INDEX incidents_created ON incidents (created_at DESC, id DESC)
    """,
    """
    CREATE INDEX incidents_customer ON incidents (customer_id, created_at DESC)
    """,
    """
    CREATE INDEX incidents_status ON incidents (status, created_at DESC)
    """,
    """
    CREATE TABLE notifications (
        id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        incident_id         uuid NOT NULL REFERENCES incidents (id),
        channel             text NOT NULL,
        kind                text NOT NULL CHECK (kind IN ('ack', 'reminder')),
        recipient           text,
        message             text NOT NULL,
        status              text NOT NULL
                            CHECK (status IN ('queued', 'sent', 'failed', 'logged')),
        provider_message_id text,
        attempts            integer NOT NULL DEFAULT 0,
        last_error          text,
        created_at          timestamptz NOT NULL DEFAULT now(),
        sent_at             timestamptz,
        UNIQUE (incident_id, channel, kind)
    )
    """,
    """
    CREATE TABLE audit_events (
        id          bigserial PRIMARY KEY,
        service     text NOT NULL,
        event_name  text NOT NULL,
        event_id    uuid NOT NULL,
        incident_id uuid NOT NULL,
        occurred_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        payload     jsonb NOT NULL,
        outcome     text,
        UNIQUE (service, event_id)
    )
    """,
    """
    CREATE INDEX audit_events_incident ON audit_events (incident_id, id)
    """,
    """
    -- The audit trail is append-only: history cannot be rewritten, even by the services.
    CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only';
    END $$
    """,
    """
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
    """,
    """
    CREATE TABLE reminders (
        id          bigserial PRIMARY KEY,
        incident_id uuid NOT NULL REFERENCES incidents (id),
        kind        text NOT NULL,
        due_at      timestamptz NOT NULL,
        state       text NOT NULL DEFAULT 'scheduled'
                    CHECK (state IN ('scheduled', 'requested', 'sent', 'skipped', 'cancelled')),
        attempts    integer NOT NULL DEFAULT 0,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        UNIQUE (incident_id, kind)
    )
    """,
    """
    CREATE INDEX reminders_due ON reminders (due_at) WHERE state = 'scheduled'
    """,
    """
    -- Transactional outbox of ingest: the incident and its event commit together.
    CREATE TABLE outbox (
        id           bigserial PRIMARY KEY,
        event_id     uuid NOT NULL UNIQUE,
        routing_key  text NOT NULL,
        payload      jsonb NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
    )
    """,
    """
    CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
