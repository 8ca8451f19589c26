"""The steps' updates of an incident stay on its page (HOT updates, no new index entries):
migration 0010."""

from __future__ import annotations

import asyncpg

from services.ingest import store as ingest_store
from services.ticketing import store as ticketing_store
from tests.services.incidents import classified_from, stored_incident


async def test_ticketing_updates_the_incident_in_place_and_readers_see_no_fallback_before(
    pool: asyncpg.Pool,
) -> None:
    event = await stored_incident(pool)
    async with pool.acquire() as conn:
        before = await ingest_store.incident(conn, event.incident_id)
        async with conn.transaction():
            stored = await ticketing_store.save_tickets(
                conn, "ticketing", [(classified_from(event), "TKT-hot", False)]
            )
            # This transaction's own counts of updated rows, and of those updated in place.
            updated, in_place = await conn.fetchrow(
                "SELECT pg_stat_get_xact_tuples_updated('incidents'::regclass),"
                " pg_stat_get_xact_tuples_hot_updated('incidents'::regclass)"
            )
        after = await ingest_store.incident(conn, event.incident_id)
    assert stored == [("TKT-hot", False)]
    # NULL -> false changed a column of an index's predicate: not in place before 0010.
    assert (updated, in_place) == (1, 1)
    assert before is not None and after is not None
    assert (before["ticket_id"], before["ticket_fallback"]) == (None, None)
    assert (after["ticket_id"], after["ticket_fallback"]) == ("TKT-hot", False)


async def test_notifications_leave_room_on_their_pages_for_the_record_of_a_send(
    pool: asyncpg.Pool,
) -> None:
    options = await pool.fetchval(
        "SELECT reloptions FROM pg_class WHERE oid = 'notifications'::regclass"
    )
    assert "fillfactor=70" in options
