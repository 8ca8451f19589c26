"""Human review flag on incidents; agents' classification corrections.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    ALTER TABLE incidents ADD COLUMN needs_review boolean NOT NULL DEFAULT false
    """,
    """
    CREATE TABLE classification_corrections (
        id          bigserial PRIMARY KEY,
        incident_id uuid NOT NULL REFERENCES incidents (id),
        previous    text,
        corrected   text NOT NULL,
        agent       text NOT NULL,
        note        text,
        created_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE INDEX classification_corrections_incident
        ON classification_corrections (incident_id, id)
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
