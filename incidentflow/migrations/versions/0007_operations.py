"""Operations: dead-letter replay audit.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Own tables rather than audit_events: a replay or purge is an operator's action, not an event
# a service handled; it has no event_id of its own (the same message may be replayed twice)
# and a purge has no incident. Append-only like audit_events.
STATEMENTS: list[str] = [
    """
    CREATE TABLE dlq_replays (
        id bigserial PRIMARY KEY,
        queue text NOT NULL,
        original_queue text,
        message_id text,
        event text,
        incident_id text,
        operator text NOT NULL,
        replayed_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX dlq_replays_incident_id ON dlq_replays (incident_id)",
    "CREATE INDEX dlq_replays_message_id ON dlq_replays (message_id)",
    """
    CREATE TABLE dlq_purges (
        id bigserial PRIMARY KEY,
        queue text NOT NULL,
        messages integer,
        operator text NOT NULL,
        purged_at timestamptz NOT NULL DEFAULT now()
    )
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
