"""Classifier's SQL."""

from collections.abc import Sequence

import asyncpg

from contracts.events import IncidentScored
from incidentflow.audit import HANDLED_COLUMNS, HANDLED_CTE, HANDLED_PARAMETERS, handled_arguments
from services.classifier.classify import Classification

SAVE_CLASSIFICATIONS = f"""
WITH step AS (
    SELECT * FROM unnest(
        {HANDLED_PARAMETERS}, $8::text[], $9::float8[], $10::text[], $11::text[], $12::bool[]
    ) AS s({HANDLED_COLUMNS}, category, confidence, reason, model, needs_review)
), {HANDLED_CTE}
UPDATE incidents i
SET classification = step.category, confidence = step.confidence, reason = step.reason,
    classifier_model = step.model, needs_review = step.needs_review, classified_at = now()
FROM step JOIN handled USING (event_id)
WHERE i.id = step.incident_id AND i.classified_at IS NULL
"""

# An event, its classification, and whether it needs a person's review.
Decided = tuple[IncidentScored, Classification, bool]
Classified = Sequence[Decided]


async def save_classifications(
    conn: asyncpg.Connection, service: str, classified: Classified
) -> None:
    """Audit each event and store its classification (and whether it needs review), unless
    the event was handled before."""
    await conn.execute(
        SAVE_CLASSIFICATIONS,
        *handled_arguments(service, [event for event, _, _ in classified]),
        [result.category for _, result, _ in classified],
        [result.confidence for _, result, _ in classified],
        [result.reason for _, result, _ in classified],
        [result.model for _, result, _ in classified],
        [needs_review for _, _, needs_review in classified],
    )
