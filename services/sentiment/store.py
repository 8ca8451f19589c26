"""Sentiment's SQL."""

import uuid

import asyncpg

from services.sentiment.score import Score


async def save_score(conn: asyncpg.Connection, incident_id: uuid.UUID, score: Score) -> None:
    await conn.execute(
        """
        UPDATE incidents SET sentiment = $2, polarity = $3, scored_at = now()
        WHERE id = $1 AND scored_at IS NULL
        """,
        incident_id,
        score.sentiment,
        score.polarity,
    )
