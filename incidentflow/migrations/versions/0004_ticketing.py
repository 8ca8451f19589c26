"""Ticketing: local tickets and reconciliation of fallback ids.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS: list[str] = [
    """
    -- The ticket system when none is configured (TICKETING_BACKEND=local): one per incident.
    CREATE TABLE local_tickets (
        number      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ticket_id   text GENERATED ALWAYS AS (
                        'LOC-' || CASE WHEN number < 1000000 THEN lpad(number::text, 6, '0')
                                       ELSE number::text END
                    ) STORED UNIQUE,
        incident_id uuid NOT NULL UNIQUE REFERENCES incidents (id),
        subject     text NOT NULL,
        category    text NOT NULL,
        sentiment   text NOT NULL,
        status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
        created_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    -- Reconciliation claims a fallback until then (a lease), and releases it to now() when
    -- the ticket system still fails, so the next round starts with those not tried lately.
    ALTER TABLE incidents ADD COLUMN ticket_reconcile_after timestamptz
    """,
    """
    CREATE INDEX incidents_ticket_fallback
        ON incidents (ticket_reconcile_after NULLS FIRST, created_at) WHERE ticket_fallback
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
