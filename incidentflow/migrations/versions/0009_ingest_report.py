"""The incident's hot path: ingest's report in one round trip, and room for updates in place.

A POST used five round trips (BEGIN, the customer's lock, the duplicate lookup, the rows,
COMMIT); called alone, ``ingest_report`` is one statement in its own transaction.

Each step updates its incident's row (scored, classified, ticketed, acknowledged). On a full
page an update goes to another page, with a new entry in each of the table's six indexes; with
space left on the page it stays there (a HOT update), with none, when no indexed column
changed. Applies to pages written from now on.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATEMENTS: list[str] = [
    "ALTER TABLE incidents SET (fillfactor = 70)",
    # Returns the customer's open incident with the same message reported within the window
    # (nothing is stored then: the caller links the report to it), or NULL once the new
    # incident, its outbox event and its audit row are stored. A window of 0 skips the check.
    # The lock serialises one customer's reports, so two identical ones racing stay one
    # incident: in a plpgsql function each statement takes a new snapshot, so the lookup
    # after the lock sees what the lock's previous holder committed.
    """
    CREATE FUNCTION ingest_report(
        p_incident_id uuid, p_customer_id text, p_channel text, p_message text,
        p_email text, p_phone text, p_created_at timestamptz, p_fingerprint text,
        p_window_seconds double precision, p_event_id uuid, p_routing_key text,
        p_payload jsonb, p_event_name text, p_occurred_at timestamptz
    ) RETURNS uuid LANGUAGE plpgsql AS $$
    DECLARE
        existing uuid;
    BEGIN
        IF p_window_seconds > 0 THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('customer:' || p_customer_id, 0));
            SELECT id INTO existing FROM incidents
            WHERE customer_id = p_customer_id AND message_fingerprint = p_fingerprint
              AND status = 'open'
              AND created_at > now() - make_interval(secs => p_window_seconds)
            ORDER BY created_at DESC LIMIT 1;
            IF existing IS NOT NULL THEN
                RETURN existing;
            END IF;
        END IF;
        INSERT INTO incidents
            (id, customer_id, channel, message, email, phone, created_at, message_fingerprint)
        VALUES (p_incident_id, p_customer_id, p_channel, p_message, p_email, p_phone,
                p_created_at, p_fingerprint);
        INSERT INTO outbox (event_id, routing_key, payload)
        VALUES (p_event_id, p_routing_key, p_payload);
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('ingest', p_event_name, p_event_id, p_incident_id, p_occurred_at, p_payload,
                'accepted');
        RETURN NULL;
    END
    $$
    """,
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
