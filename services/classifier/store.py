"""Classifier's SQL."""

import uuid

import asyncpg

from services.classifier.classify import Classification


async def save_classification(
    conn: asyncpg.Connection, incident_id: uuid.UUID, result: Classification, needs_review: bool
) -> None:
    await conn.execute(
        """
        UPDATE incidents
        SET classification = $2, confidence = $3, reason = $4, classifier_model = $5,
            needs_review = $6, classified_at = now()
        WHERE id = $1 AND classified_at IS NULL
        """,
        incident_id,
        result.category,
        result.confidence,
        result.reason,
        result.model,
        needs_review,
    )
