"""Personal data kept to what is needed: the audit trail without contact details or text, and
a record of each erasure.

Every row written to ``audit_events`` has ``email``, ``phone``, ``message`` and the classifier's
``reason`` (words of the message) taken out of its payload by a trigger, the message replaced
by its SHA-256 (``message_sha256``): whichever code
writes the row (services, ingest's SQL function, a future one), the append-only table never
holds what an erasure request would need to remove. Rows written before are scrubbed the same
way here, with the append-only trigger held off for that one statement. And TRUNCATE, which
the row-level append-only trigger never saw, is refused too.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SCRUB = """
CREATE FUNCTION audit_payload_without_personal_data(payload jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN payload ? 'message' THEN
            (payload - 'email' - 'phone' - 'message' - 'reason')
            || jsonb_build_object(
                'message_sha256',
                encode(sha256(convert_to(coalesce(payload->>'message', ''), 'UTF8')), 'hex'))
        ELSE payload - 'email' - 'phone' - 'reason'
    END
$$
"""

STATEMENTS = [
    SCRUB,
    """
    CREATE FUNCTION audit_events_scrub() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.payload := audit_payload_without_personal_data(NEW.payload);
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER audit_events_scrub BEFORE INSERT ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_scrub()
    """,
    "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
    """
    UPDATE audit_events SET payload = audit_payload_without_personal_data(payload)
    WHERE payload ?| array['email', 'phone', 'message', 'reason']
    """,
    "ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update",
    # The row triggers never saw TRUNCATE: one statement could empty the trail.
    """
    CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()
    """,
    # Published events no longer stay in the outbox (the relay deletes them): nor do the ones
    # published before.
    "DELETE FROM outbox WHERE published_at IS NOT NULL",
    # When an incident's personal data was erased: the retention job skips it, and a later
    # repeat report linked to it is still erased with it.
    "ALTER TABLE incidents ADD COLUMN erased_at timestamptz",
    """
    CREATE TABLE erasures (
        id              bigserial PRIMARY KEY,
        customer_sha256 text NOT NULL,
        incidents       integer NOT NULL,
        operator        text NOT NULL,
        erased_at       timestamptz NOT NULL DEFAULT now()
    )
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE erasures")
    op.execute("ALTER TABLE incidents DROP COLUMN erased_at")
    op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
    op.execute("DROP TRIGGER audit_events_scrub ON audit_events")
    op.execute("DROP FUNCTION audit_events_scrub()")
    op.execute("DROP FUNCTION audit_payload_without_personal_data(jsonb)")
