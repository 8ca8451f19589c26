"""Notifier: provider delivery fields for SMS and WhatsApp, and claims with a lease.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = [
    # `sending`: claimed by one delivery until lease_until; an expired lease may be re-claimed.
    "ALTER TABLE notifications DROP CONSTRAINT notifications_status_check",
    """
    ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'logged'))
    """,
    "ALTER TABLE notifications ADD COLUMN lease_until timestamptz",
    # false when the provider refused the message for good (bad number): never claimed again.
    "ALTER TABLE notifications ADD COLUMN retryable boolean NOT NULL DEFAULT true",
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
