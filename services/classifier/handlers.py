"""Classifier's subscriber: incident.scored → classify → incident.classified."""

from __future__ import annotations

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

    async def decide(events: list[IncidentScored]) -> list[store.Decided]:
        results = await classifier.classify_many([event.message for event in events])
        return [
            (event, result, needs_review(event, result))
            for event, result in zip(events, results, strict=True)
        ]

    def needs_review(event: IncidentScored, result: Classification) -> bool:
        # A person checks the category when the model is unsure, and the mood when sentiment
        # could not score it (a language it has no method for).
        return result.confidence < review_threshold or event.sentiment == "unknown"

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

    @runtime.consume(CLASSIFIER_SCORED)
    async def on_incident_scored(event: IncidentScored) -> None:
        (decided,) = await decide([event])
        await classifications.submit(decided)
        await announce(*decided)

    async def on_batch(events: list[IncidentScored]) -> None:
        """A batch's events together: classified in one call (the local model embeds them
        together; Gemini's calls run concurrently, bounded by its client), one write, then each
        published and logged under its own incident's trace."""
        decided = await decide(events)
        await classifications.submit_all(decided)
        await each_traced(
            (event.trace, announce(event, result, review)) for event, result, review in decided
        )

    runtime.handle_batches(CLASSIFIER_SCORED, IncidentScored, on_batch)
