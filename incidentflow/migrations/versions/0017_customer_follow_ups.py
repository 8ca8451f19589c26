"""When each customer was last followed up, so a customer gets one follow-up at a time.

The reminder service claims its row for every follow-up it sends (INSERT ... ON CONFLICT DO
UPDATE ... WHERE older than the gap): a concurrent claim for the same customer waits on that
row and then sees the newer time, so two follow-ups of one customer never both go out
(docs/adr/0057).

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE customer_follow_ups (
            customer_id    text PRIMARY KEY,
            followed_up_at timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE customer_follow_ups")
