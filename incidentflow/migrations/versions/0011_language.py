"""The language of each incident's message (ISO 639-1), set by the sentiment step.

NULL until scored, and for incidents scored before the column existed. Local tickets carry it
too, as the other ticket systems do.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE incidents ADD COLUMN language text",
    "ALTER TABLE local_tickets ADD COLUMN language text NOT NULL DEFAULT 'en'",
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE local_tickets DROP COLUMN language")
    op.execute("ALTER TABLE incidents DROP COLUMN language")
