"""Ingest's SQL: incidents in, the outbox, and the read side of the API."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from contracts.events import IncidentReceived
from services.ingest.intake.store import conversation


def fingerprint(message: str) -> str:
    """The same report whatever its case and spacing: what duplicate detection compares."""
    return hashlib.sha256(" ".join(message.casefold().split()).encode()).hexdigest()


async def record_report(
    conn: asyncpg.Connection, event: IncidentReceived, fingerprint: str, window_seconds: float
) -> uuid.UUID | None:
    """The customer's open incident with the same message reported within the window (nothing
    stored: the report is a repeat), else None once the incident row, its event (the outbox
    pattern) and its audit row are stored. One statement, its own transaction unless the
    caller has one (migration 0009); a window of 0 checks for no repeat."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT ingest_report($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb,"
        " $13, $14)",
        event.incident_id,
        event.customer_id,
        event.channel,
        event.message,
        event.email,
        event.phone,
        event.created_at,
        fingerprint,
        float(window_seconds),
        event.event_id,
        event.routing_key(),
        event.model_dump_json(),
        event.name,
        event.occurred_at,
    )


async def lock(conn: asyncpg.Connection, name: str) -> None:
    """Serialise transactions on ``name`` until the caller's transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)


@dataclass(frozen=True)
class IdempotentOutcome:
    request_hash: str
    incident_id: uuid.UUID
    duplicate: bool


async def idempotent_outcome(
    conn: asyncpg.Connection, caller: str, key: str
) -> IdempotentOutcome | None:
    row = await conn.fetchrow(
        "SELECT request_hash, incident_id, duplicate FROM idempotency_keys"
        " WHERE caller = $1 AND key = $2",
        caller,
        key,
    )
    return IdempotentOutcome(**dict(row)) if row else None


async def remember_outcome(
    conn: asyncpg.Connection, caller: str, key: str, outcome: IdempotentOutcome
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (caller, key, request_hash, incident_id, duplicate)"
        " VALUES ($1, $2, $3, $4, $5)",
        caller,
        key,
        outcome.request_hash,
        outcome.incident_id,
        outcome.duplicate,
    )


async def record_repeat_report(
    conn: asyncpg.Connection, incident_id: uuid.UUID, report: IncidentReceived
) -> None:
    """Keep what the customer wrote again, count it on the incident, and audit the link."""
    await conn.execute(
        """
        INSERT INTO incident_reports (incident_id, customer_id, channel, message, email, phone)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        incident_id,
        report.customer_id,
        report.channel,
        report.message,
        report.email,
        report.phone,
    )
    await conn.execute(
        "UPDATE incidents SET repeat_reports = repeat_reports + 1 WHERE id = $1", incident_id
    )
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('ingest', 'incident.report_linked', gen_random_uuid(), $1, now(), $2,
                'duplicate report linked')
        """,
        incident_id,
        {"channel": report.channel, "received_at": report.created_at.isoformat()},
    )


async def pending_outbox(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Unpublished events, locked so that other ingest replicas skip them: each event's JSON
    as stored (``body``, bytes to publish) and the trace context it carries (``trace``)."""
    return await conn.fetch(  # type: ignore[no-any-return]
        """
        SELECT id, event_id, routing_key, convert_to(payload::text, 'UTF8') AS body,
               payload->'trace' AS trace
        FROM outbox
        WHERE published_at IS NULL ORDER BY id
        LIMIT $1 FOR UPDATE SKIP LOCKED
        """,
        limit,
    )


async def mark_published(conn: asyncpg.Connection, ids: list[int]) -> None:
    """Published events leave the outbox: the broker has them, and a row kept would keep the
    customer's message and address long after anyone needs them here."""
    await conn.execute("DELETE FROM outbox WHERE id = ANY($1)", ids)


# ticket_fallback is false from the start (migration 0010); without a ticket it says nothing.
INCIDENT_COLUMNS = """
    id AS incident_id, customer_id, channel, message, status, sentiment, polarity, language,
    classification, confidence, reason, classifier_model, needs_review, ticket_id,
    CASE WHEN ticket_id IS NOT NULL THEN ticket_fallback END AS ticket_fallback, repeat_reports,
    reminder_sent, created_at, scored_at, classified_at, ticketed_at, acknowledged_at,
    resolved_at, sentiment_trend
"""


async def incident(conn: asyncpg.Connection, incident_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1", incident_id
    )
    return dict(row) if row else None


async def accepted_summary(
    conn: asyncpg.Connection, incident_id: uuid.UUID
) -> dict[str, Any] | None:
    """What the answer to a POST needs: the incident's progress and its acknowledgements."""
    row = await conn.fetchrow(
        """
        SELECT ticket_id, status, classification, confidence, sentiment, acknowledged_at,
               ARRAY(SELECT channel FROM notifications n
                     WHERE n.incident_id = i.id AND n.kind = 'ack'
                     ORDER BY created_at, channel) AS ack_channels
        FROM incidents i WHERE id = $1
        """,
        incident_id,
    )
    return dict(row) if row else None


async def incident_details(
    conn: asyncpg.Connection, incident_id: uuid.UUID
) -> dict[str, Any] | None:
    state = await incident(conn, incident_id)
    if state is None:
        return None
    state["notifications"] = [
        dict(r)
        for r in await conn.fetch(
            """
            SELECT channel, kind, recipient, status, attempts, last_error, sent_at
            FROM notifications WHERE incident_id = $1 ORDER BY created_at, channel
            """,
            incident_id,
        )
    ]
    reminders = [
        dict(r)
        for r in await conn.fetch(
            "SELECT kind, due_at, state, attempts FROM reminders"
            " WHERE incident_id = $1 ORDER BY id",
            incident_id,
        )
    ]
    state["reminders"] = reminders
    # The customer follow-up, as the seed's single reminder.
    state["reminder"] = next((r for r in reminders if r["kind"] == "follow_up"), None)
    state["corrections"] = [
        dict(r)
        for r in await conn.fetch(
            """
            SELECT previous, corrected, agent, note, created_at
            FROM classification_corrections WHERE incident_id = $1 ORDER BY id
            """,
            incident_id,
        )
    ]
    state["messages"] = await conversation(conn, incident_id)
    state["audit"] = [
        dict(r)
        for r in await conn.fetch(
            """
            SELECT service, event_name, event_id, occurred_at, recorded_at, outcome
            FROM audit_events WHERE incident_id = $1 ORDER BY id
            """,
            incident_id,
        )
    ]
    return state


async def list_incidents(
    conn: asyncpg.Connection,
    *,
    status: str | None,
    category: str | None,
    customer_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    sentiment: str | None = None,
    language: str | None = None,
    needs_review: bool | None = None,
    text: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on (created_at, id) so pages stay stable under inserts.
    ``text``: words found in the first message or any later one, case ignored."""
    rows = await conn.fetch(
        f"""
        SELECT {INCIDENT_COLUMNS} FROM incidents i
        WHERE ($1::text IS NULL OR status = $1)
          AND ($2::text IS NULL OR classification = $2)
          AND ($3::text IS NULL OR customer_id = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
          AND ($7::text IS NULL OR sentiment = $7)
          AND ($8::text IS NULL OR language = $8)
          AND ($9::boolean IS NULL OR needs_review = $9)
          AND ($10::text IS NULL OR message ILIKE $10 OR EXISTS (
              SELECT 1 FROM incident_messages m WHERE m.incident_id = i.id AND m.body ILIKE $10))
        ORDER BY created_at DESC, id DESC
        LIMIT $6
        """,
        status,
        category,
        customer_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
        sentiment,
        language,
        needs_review,
        _containing(text) if text else None,
    )
    return [dict(r) for r in rows]


def _containing(text: str) -> str:
    """An ILIKE pattern for ``text`` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def review_queue(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    """Open incidents flagged for review, oldest first: the order a person works through them."""
    rows = await conn.fetch(
        f"""
        SELECT {INCIDENT_COLUMNS} FROM incidents
        WHERE needs_review AND status = 'open'
        ORDER BY created_at, id LIMIT $1
        """,
        limit,
    )
    return [dict(r) for r in rows]


async def set_status(
    conn: asyncpg.Connection, incident_id: uuid.UUID, status: str, actor: str
) -> bool:
    """Resolve (or reopen) an incident, audited with who did it; resolving cancels the
    follow-ups still pending."""
    updated = await conn.fetchval(
        """
        UPDATE incidents
        SET status = $2,
            resolved_at = CASE WHEN $2 = 'resolved' THEN COALESCE(resolved_at, now()) END
        WHERE id = $1 RETURNING true
        """,
        incident_id,
        status,
    )
    if updated and status == "resolved":
        await conn.execute(
            """
            UPDATE reminders SET state = 'cancelled', updated_at = now()
            WHERE incident_id = $1 AND state = 'scheduled'
            """,
            incident_id,
        )
    if updated:
        action = "incident.resolved" if status == "resolved" else "incident.reopened"
        await audit_operator_action(conn, incident_id, action, {"status": status}, actor)
    return bool(updated)


async def audit_operator_action(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    action: str,
    details: dict[str, Any],
    actor: str,
) -> None:
    """An operator's change to an incident, in the append-only audit trail, naming the
    authenticated caller (``key:<name>``, ``jwt:<subject>``, or ``anonymous`` when open)."""
    await conn.execute(
        """
        INSERT INTO audit_events
            (service, event_name, event_id, incident_id, occurred_at, payload, outcome)
        VALUES ('ingest', $1, gen_random_uuid(), $2, now(), $3, $4)
        """,
        action,
        incident_id,
        {**details, "by": actor},
        f"{action.removeprefix('incident.').replace('.', ' ')} by {actor}",
    )


NOTIFICATION_STATUSES = ("queued", "sending", "sent", "failed", "logged", "suppressed")


async def stats(conn: asyncpg.Connection) -> dict[str, Any]:
    async def counts(column: str) -> dict[str, int]:
        rows = await conn.fetch(
            f"SELECT {column} AS key, count(*) AS n FROM incidents "
            f"WHERE {column} IS NOT NULL GROUP BY {column}"
        )
        return {r["key"]: r["n"] for r in rows}

    notifications: dict[str, dict[str, int]] = {}
    by_status = dict.fromkeys(NOTIFICATION_STATUSES, 0)
    for row in await conn.fetch(
        "SELECT channel, status, count(*) AS n FROM notifications GROUP BY channel, status"
    ):
        notifications.setdefault(row["channel"], {})[row["status"]] = row["n"]
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
    return {
        "total": await conn.fetchval("SELECT count(*) FROM incidents"),
        "by_status": await counts("status"),
        "by_category": await counts("classification"),
        "by_sentiment": await counts("sentiment"),
        "by_language": await counts("language"),
        "reminders_sent": await conn.fetchval("SELECT count(*) FROM incidents WHERE reminder_sent"),
        "notifications": notifications,
        "notifications_by_status": by_status,
        "notifications_retried": await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE attempts > 1"
        ),
        "repeat_reports": await conn.fetchval("SELECT count(*) FROM incident_reports"),
        "needs_review": await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE needs_review AND status = 'open'"
        ),
        "corrections": await conn.fetchval("SELECT count(*) FROM classification_corrections"),
    }


async def correct_classification(
    conn: asyncpg.Connection, incident_id: uuid.UUID, category: str, agent: str, note: str | None
) -> bool:
    """Set the agent's category, clear the review flag, keep the correction and audit it."""
    previous = await conn.fetchrow(
        "SELECT classification FROM incidents WHERE id = $1 FOR UPDATE", incident_id
    )
    if previous is None:
        return False
    await conn.execute(
        "UPDATE incidents SET classification = $2, needs_review = false WHERE id = $1",
        incident_id,
        category,
    )
    await conn.execute(
        """
        INSERT INTO classification_corrections (incident_id, previous, corrected, agent, note)
        VALUES ($1, $2, $3, $4, $5)
        """,
        incident_id,
        previous["classification"],
        category,
        agent,
        note,
    )
    await audit_operator_action(
        conn,
        incident_id,
        "classification.corrected",
        {"previous": previous["classification"], "corrected": category},
        agent,
    )
    return True


async def corrections_for_training(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(message, category) of every corrected incident, the latest correction winning."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (c.incident_id) i.message, c.corrected
        FROM classification_corrections c JOIN incidents i ON i.id = c.incident_id
        ORDER BY c.incident_id, c.id DESC
        """
    )
    return [(r["message"], r["corrected"]) for r in rows]


async def overview(conn: asyncpg.Connection) -> dict[str, Any]:
    """The support team's day at a glance: the last 24 hours by hour and category, the
    acknowledgement time per hour, the mix of moods and languages, and what is open, waiting
    for review or due for a follow-up."""
    per_hour = await conn.fetch(
        """
        SELECT date_trunc('hour', created_at) AS hour, coalesce(classification, 'unclassified')
               AS category, count(*) AS n
        FROM incidents WHERE created_at > now() - interval '24 hours'
        GROUP BY 1, 2 ORDER BY 1
        """
    )
    acknowledgement = await conn.fetch(
        """
        SELECT date_trunc('hour', created_at) AS hour,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                   acknowledged_at - created_at)) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM
                   acknowledged_at - created_at)) AS p95
        FROM incidents
        WHERE created_at > now() - interval '24 hours' AND acknowledged_at IS NOT NULL
        GROUP BY 1 ORDER BY 1
        """
    )
    mix = await conn.fetch(
        """
        SELECT 'sentiment' AS kind, coalesce(sentiment, 'not scored') AS key, count(*) AS n
        FROM incidents WHERE created_at > now() - interval '24 hours' GROUP BY 2
        UNION ALL
        SELECT 'language', coalesce(language, 'not detected'), count(*)
        FROM incidents WHERE created_at > now() - interval '24 hours' GROUP BY 2
        """
    )
    counts = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE status = 'open') AS open,
               count(*) FILTER (WHERE status = 'resolved') AS resolved,
               count(*) FILTER (WHERE status = 'open' AND needs_review) AS needs_review,
               coalesce(sum(repeat_reports), 0) AS repeat_reports
        FROM incidents
        """
    )
    due = await conn.fetchval(
        "SELECT count(*) FROM reminders"
        " WHERE state = 'scheduled' AND due_at < now() + interval '24 hours'"
    )
    return {
        "per_hour": [dict(r) for r in per_hour],
        "acknowledgement": [dict(r) for r in acknowledgement],
        "sentiment": {r["key"]: r["n"] for r in mix if r["kind"] == "sentiment"},
        "language": {r["key"]: r["n"] for r in mix if r["kind"] == "language"},
        **dict(counts),
        "follow_ups_due": due,
    }
