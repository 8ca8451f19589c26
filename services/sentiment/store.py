"""Sentiment's SQL."""

from collections.abc import Sequence

import asyncpg

from contracts.events import IncidentMessageReceived, IncidentReceived
from incidentflow.audit import HANDLED_COLUMNS, HANDLED_CTE, HANDLED_PARAMETERS, handled_arguments
from services.sentiment.score import Score

SAVE_SCORES = f"""
WITH step AS (
    SELECT * FROM unnest({HANDLED_PARAMETERS}, $8::text[], $9::float8[], $10::text[])
    AS s({HANDLED_COLUMNS}, sentiment, polarity, language)
), {HANDLED_CTE}
UPDATE incidents i
SET sentiment = step.sentiment, polarity = step.polarity, language = step.language,
    scored_at = now()
FROM step JOIN handled USING (event_id)
WHERE i.id = step.incident_id AND i.scored_at IS NULL
"""


Scored = Sequence[tuple[IncidentReceived, Score]]


async def save_scores(conn: asyncpg.Connection, service: str, scored: Scored) -> None:
    """Audit each event and store its score, unless the event was handled before."""
    await conn.execute(
        SAVE_SCORES,
        *handled_arguments(service, [event for event, _ in scored]),
        [score.sentiment for _, score in scored],
        [score.polarity for _, score in scored],
        [score.language for _, score in scored],
    )


# A later message that moves the customer's polarity by more than this from the first
# message's changes the incident's trend (VADER's compound score runs from -1 to 1).
TREND_MARGIN = 0.2

SAVE_MESSAGE_SCORES = f"""
WITH step AS (
    SELECT * FROM unnest({HANDLED_PARAMETERS}, $8::bigint[], $9::text[], $10::float8[], $11::text[])
    AS s({HANDLED_COLUMNS}, message_id, sentiment, polarity, language)
), {HANDLED_CTE}, scored AS (
    UPDATE incident_messages m
    SET sentiment = step.sentiment, polarity = step.polarity, language = step.language,
        scored_at = now()
    FROM step JOIN handled USING (event_id)
    WHERE m.id = step.message_id AND m.scored_at IS NULL
    RETURNING m.id, m.incident_id, m.polarity
)
-- The trend follows the latest message scored: one scored after a later one changes nothing.
UPDATE incidents i
SET sentiment_trend = CASE
    WHEN i.polarity IS NULL OR abs(scored.polarity - i.polarity) <= {TREND_MARGIN} THEN 'steady'
    WHEN scored.polarity < i.polarity THEN 'worsening'
    ELSE 'improving'
END
FROM scored
WHERE i.id = scored.incident_id
  AND NOT EXISTS (
      SELECT 1 FROM incident_messages later
      WHERE later.incident_id = i.id AND later.id > scored.id AND later.scored_at IS NOT NULL
  )
"""

MessagesScored = Sequence[tuple[IncidentMessageReceived, Score]]


async def save_message_scores(
    conn: asyncpg.Connection, service: str, scored: MessagesScored
) -> None:
    """Audit each later message's event, store its score and the incident's trend, unless
    the event was handled before."""
    await conn.execute(
        SAVE_MESSAGE_SCORES,
        *handled_arguments(service, [event for event, _ in scored]),
        [event.message_id for event, _ in scored],
        [score.sentiment for _, score in scored],
        [score.polarity for _, score in scored],
        [score.language for _, score in scored],
    )
