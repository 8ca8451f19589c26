"""Classifier's subscriber: incident.scored → classify → incident.classified."""

from __future__ import annotations

import logging

from contracts.events import IncidentClassified, IncidentScored, derived_event_id
from contracts.topology import CLASSIFIER_SCORED
from incidentflow.metrics import record_classification
from incidentflow.service import ServiceRuntime
from services.classifier import store
from services.classifier.classify import Classifier

log = logging.getLogger("incidentflow.classifier")


def register(runtime: ServiceRuntime, classifier: Classifier, review_threshold: float) -> None:
    classifications = runtime.step_writes(store.save_classifications)

    @runtime.broker.subscriber(CLASSIFIER_SCORED.queue, CLASSIFIER_SCORED.source)
    async def on_incident_scored(event: IncidentScored) -> None:
        result = await classifier.classify(event.message)
        needs_review = result.confidence < review_threshold
        await classifications.submit((event, result, needs_review))
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
