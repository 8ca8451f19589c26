"""Ticket comments: a customer's follow-ups on the local tickets.

``local_ticket_comments``: with TICKETING_BACKEND=local, each later message of an incident
(``incident_messages``) added to the incident's local ticket, once: a redelivered follow-up
finds its (incident, message) row and adds nothing. ``body`` holds the customer's words.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE local_ticket_comments (
        id          bigserial PRIMARY KEY,
        ticket_id   text NOT NULL REFERENCES local_tickets (ticket_id),
        incident_id uuid NOT NULL REFERENCES incidents (id),
        -- incident_messages.id of the follow-up: the same message is the same comment
        message_id  bigint NOT NULL,
        channel     text NOT NULL,
        body        text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        UNIQUE (incident_id, message_id)
    )
    """,
    "CREATE INDEX local_ticket_comments_ticket ON local_ticket_comments (ticket_id, id)",
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE local_ticket_comments")
