"""Later messages scored into the conversation's mood (store.save_message_scores)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from contracts.events import IncidentMessageReceived
from services.ingest.intake import store as intake_store
from services.sentiment import store
from services.sentiment.score import Score
from tests.services.incidents import stored_incident


async def incident_scored(pool: asyncpg.Pool, polarity: float) -> uuid.UUID:
    incident = await stored_incident(pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE incidents SET sentiment = 'neutral', polarity = $2, scored_at = now()"
            " WHERE id = $1",
            incident.incident_id,
            polarity,
        )
    return incident.incident_id


async def written_again(pool: asyncpg.Pool, incident_id: uuid.UUID) -> IncidentMessageReceived:
    async with pool.acquire() as conn, conn.transaction():
        message_id, _ = await intake_store.add_message(
            conn, incident_id, "email", "a@b.co", "This is getting worse!", []
        )
    return IncidentMessageReceived(
        incident_id=incident_id,
        message_id=message_id,
        channel="email",
        message="This is getting worse!",
        received_at=datetime.now(UTC),
    )


async def save(pool: asyncpg.Pool, event: IncidentMessageReceived, score: Score) -> None:
    async with pool.acquire() as conn:
        await store.save_message_scores(conn, "sentiment", [(event, score)])


async def state(pool: asyncpg.Pool, incident_id: uuid.UUID) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            """
            SELECT i.sentiment_trend, m.sentiment, m.polarity, m.language
            FROM incidents i JOIN incident_messages m ON m.incident_id = i.id
            WHERE i.id = $1 ORDER BY m.id DESC LIMIT 1
            """,
            incident_id,
        )


async def test_an_angrier_message_makes_the_trend_worsening(pool: asyncpg.Pool) -> None:
    incident_id = await incident_scored(pool, 0.0)
    event = await written_again(pool, incident_id)
    await save(pool, event, Score("negative", -0.7, "en"))
    row = await state(pool, incident_id)
    assert (row["sentiment_trend"], row["sentiment"], row["polarity"], row["language"]) == (
        "worsening",
        "negative",
        -0.7,
        "en",
    )
    # Redelivered with another score (it cannot be, but a second write must not count).
    await save(pool, event, Score("positive", 0.9, "en"))
    assert (await state(pool, incident_id))["sentiment"] == "negative"


async def test_a_calmer_message_improves_and_a_close_one_is_steady(pool: asyncpg.Pool) -> None:
    incident_id = await incident_scored(pool, -0.8)
    await save(pool, await written_again(pool, incident_id), Score("positive", 0.6, "en"))
    assert (await state(pool, incident_id))["sentiment_trend"] == "improving"
    await save(pool, await written_again(pool, incident_id), Score("negative", -0.7, "en"))
    assert (await state(pool, incident_id))["sentiment_trend"] == "steady"
