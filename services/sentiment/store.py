"""Sentiment's SQL."""

from collections.abc import Sequence

import asyncpg

from contracts.events import IncidentReceived
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
