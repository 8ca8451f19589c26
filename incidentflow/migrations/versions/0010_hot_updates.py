"""Updates in place for ticketing's and the notifier's writes.

An update can stay on its row's page without new index entries (a HOT update) only when no
column an index uses changes, the columns in an index's predicate included, and the page has
room for the new version.

- ``incidents.ticket_fallback`` is false from the start, as it is for any ticket the ticket
  system issued: ticketing's update changes it only for a fallback id. It was NULL until
  ticketed, and it is in the predicate of ``incidents_ticket_fallback``, so every incident's
  ticketing update was a non-HOT one, with an entry in each of the table's indexes (a quarter
  of the table's updates in a benchmark run). Readers that show it say NULL while there is no
  ticket, as before (services/ingest/store.py).
- ``notifications`` gets room on its pages (fillfactor 70) for the update that records what
  became of the send its claim inserted; full pages made most of those non-HOT.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE incidents ALTER COLUMN ticket_fallback SET DEFAULT false",
    "ALTER TABLE notifications SET (fillfactor = 70)",
]


def upgrade() -> None:
    # asyncpg prepares each statement, so they run one at a time.
    for statement in STATEMENTS:
        op.execute(statement)
