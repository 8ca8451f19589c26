"""Conversations: what a customer writes after the first message, and what came in by mail or text.

``incident_messages``: the customer's later messages on an incident (a reply to the
acknowledgement, a second text), in order. The first message stays the incident's own
``message``; what went out is in ``notifications``. ``GET /api/incidents/{id}`` reads the
three as one conversation (docs/adr/0052).

``inbound_receipts``: one row per mail or text the intake took in, keyed by the id its
channel gave it (the mail's Message-ID, Twilio's MessageSid). A mail delivered twice (a
sender retrying after a lost answer, an IMAP poll repeated after a crash) finds its receipt
and changes nothing. Auto-replies, bounces and loops get a receipt saying why they were
ignored, and nothing else: no address, no text.

The indexes on the incidents' address and number find a sender's earlier incidents: the
customer id an integrator gave that address, or the open incident a text joins.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE incident_messages (
        id          bigserial PRIMARY KEY,
        incident_id uuid NOT NULL REFERENCES incidents (id),
        channel     text NOT NULL CHECK (channel IN ('email', 'chat', 'sms', 'whatsapp')),
        sender      text NOT NULL,
        body        text NOT NULL,
        -- name, content type and size of each attachment; their content is never stored
        attachments jsonb NOT NULL DEFAULT '[]',
        received_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX incident_messages_incident ON incident_messages (incident_id, id)",
    """
    CREATE TABLE inbound_receipts (
        channel     text NOT NULL,
        external_id text NOT NULL,
        incident_id uuid REFERENCES incidents (id),
        outcome     text NOT NULL CHECK (outcome IN ('incident', 'message', 'ignored')),
        reason      text,
        received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (channel, external_id)
    )
    """,
    "CREATE INDEX incidents_email_lower ON incidents (lower(email))",
    "CREATE INDEX incidents_phone_recent ON incidents (phone, created_at) WHERE phone IS NOT NULL",
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX incidents_phone_recent")
    op.execute("DROP INDEX incidents_email_lower")
    op.execute("DROP TABLE inbound_receipts")
    op.execute("DROP TABLE incident_messages")
