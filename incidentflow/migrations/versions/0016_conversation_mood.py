"""The mood of a conversation: each later message's sentiment, and the incident's trend.

``incident_messages`` gains what sentiment finds in each of the customer's later messages
(``language``, ``sentiment``, ``polarity``, ``scored_at``); ``incidents.sentiment_trend`` says
how the customer's mood moved from the first message to the latest scored one: ``worsening``,
``improving`` or ``steady`` (NULL until a later message is scored).

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE incident_messages ADD COLUMN language text",
    "ALTER TABLE incident_messages ADD COLUMN sentiment text",
    "ALTER TABLE incident_messages ADD COLUMN polarity double precision",
    "ALTER TABLE incident_messages ADD COLUMN scored_at timestamptz",
    """
    ALTER TABLE incidents ADD COLUMN sentiment_trend text
        CHECK (sentiment_trend IN ('worsening', 'improving', 'steady'))
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE incidents DROP COLUMN sentiment_trend")
    for column in ("scored_at", "polarity", "sentiment", "language"):
        op.execute(f"ALTER TABLE incident_messages DROP COLUMN {column}")
