"""Classifier's subscriber: incident.scored → classify → incident.classified."""

from __future__ import annotations

import asyncio
import logging

from contracts.events import IncidentClassified, IncidentScored, derived_event_id
from contracts.topology import CLASSIFIER_SCORED
from incidentflow.metrics import record_classification
from incidentflow.service import ServiceRuntime
from incidentflow.tracing import each_traced
from services.classifier import store
from services.classifier.classify import Classification, Classifier

log = logging.getLogger("incidentflow.classifier")


def register(runtime: ServiceRuntime, classifier: Classifier, review_threshold: float) -> None:
    classifications = runtime.step_writes(store.save_classifications)

    async def decide(event: IncidentScored) -> store.Decided:
        result = await classifier.classify(event.message)
        return event, result, result.confidence < review_threshold

    async def announce(event: IncidentScored, result: Classification, needs_review: bool) -> None:
        classified = IncidentClassified(
            **event.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(event.incident_id, "classified"),
            classification=result.category,
            confidence=result.confidence,
            reason=result.reason,
            classifier_model=result.model,
            needs_review=needs_review,
        )
        await runtime.events.publish(classified)
        # Observability: counted once the classification is published, as the pipeline sees it.
        record_classification(result.category, result.model, result.confidence)
        log.info(
            "incident classified",
            extra={
                "incident_id": str(event.incident_id),
                "category": result.category,
                "confidence": result.confidence,
                "model": result.model,
            },
        )

    @runtime.broker.subscriber(CLASSIFIER_SCORED.queue, CLASSIFIER_SCORED.source)
    async def on_incident_scored(event: IncidentScored) -> None:
        decided = await decide(event)
        await classifications.submit(decided)
        await announce(*decided)

    async def on_batch(events: list[IncidentScored]) -> None:
        """A batch's events together: classified concurrently (Gemini's client bounds its own
        calls), one write, then each published and logged under its own incident's trace."""
        decided = await asyncio.gather(*(decide(event) for event in events))
        await classifications.submit_all(decided)
        await each_traced(
            (event.trace, announce(event, result, review)) for event, result, review in decided
        )

    runtime.handle_batches(CLASSIFIER_SCORED, IncidentScored, on_batch)
