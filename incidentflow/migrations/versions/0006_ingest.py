"""Ingest: idempotency keys and duplicate-report links (API keys live hashed in settings).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    -- SHA-256 of the normalised message (case and whitespace folded): finds a repeat report
    -- without indexing what the customer wrote.
    ALTER TABLE incidents
        ADD COLUMN message_fingerprint text,
        ADD COLUMN repeat_reports integer NOT NULL DEFAULT 0
    """,
    """
    CREATE INDEX incidents_repeat ON incidents (customer_id, message_fingerprint, created_at DESC)
        WHERE status = 'open'
    """,
    """
    -- Every repeat of an open incident, as the customer sent it: linked, never lost.
    CREATE TABLE incident_reports (
        id          bigserial PRIMARY KEY,
        incident_id uuid NOT NULL REFERENCES incidents (id),
        customer_id text NOT NULL,
        channel     text NOT NULL,
        message     text NOT NULL,
        email       text NOT NULL,
        phone       text,
        received_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE INDEX incident_reports_incident ON incident_reports (incident_id, id)
    """,
    """
    -- Idempotency-Key of a POST, per caller (API key name, JWT subject, or anonymous).
    CREATE TABLE idempotency_keys (
        caller       text NOT NULL,
        key          text NOT NULL,
        request_hash text NOT NULL,
        incident_id  uuid NOT NULL REFERENCES incidents (id),
        duplicate    boolean NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (caller, key)
    )
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
