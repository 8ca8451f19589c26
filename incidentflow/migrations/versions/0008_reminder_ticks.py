"""Reminders fired by ticks: a 'requesting' state between claimed and confirmed.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATEMENTS: list[str] = [
    "ALTER TABLE reminders DROP CONSTRAINT reminders_state_check",
    # 'requesting': claimed by a firing, its reminder.requested not yet confirmed by the
    # broker. One left there longer than a lease was lost with its process: asked again.
    """
    ALTER TABLE reminders ADD CONSTRAINT reminders_state_check CHECK (
        state IN ('scheduled', 'requesting', 'requested', 'sent', 'skipped', 'cancelled')
    )
    """,
    "CREATE INDEX reminders_requesting ON reminders (updated_at) WHERE state = 'requesting'",
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
