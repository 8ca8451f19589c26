"""Outgoing limits by recipient: each notification's recipient key, and the suppressed status.

``recipient_key`` is a SHA-256 of the normalised address or number (the ``recipient`` column
holds it masked), so the notifier can count what went to one recipient in a window, across
customers and API keys. ``suppressed``: a notification not sent because its recipient had
reached the limit, or its number is in a country texts may not go to.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE notifications ADD COLUMN recipient_key text",
    "ALTER TABLE notifications DROP CONSTRAINT notifications_status_check",
    """
    ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'logged', 'suppressed'))
    """,
    """
    CREATE INDEX notifications_recipient_recent ON notifications (recipient_key, created_at)
        WHERE recipient_key IS NOT NULL
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX notifications_recipient_recent")
    op.execute("DELETE FROM notifications WHERE status = 'suppressed'")
    op.execute("ALTER TABLE notifications DROP CONSTRAINT notifications_status_check")
    op.execute(
        """
        ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
            CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'logged'))
        """
    )
    op.execute("ALTER TABLE notifications DROP COLUMN recipient_key")
