"""Escalation notifications to the support team.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check",
    """
    ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
        CHECK (kind IN ('ack', 'reminder', 'escalation'))
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
