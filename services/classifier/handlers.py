"""Classifier's subscriber: incident.scored → classify → incident.classified."""

from __future__ import annotations

from contracts.events import IncidentClassified, IncidentScored
from contracts.topology import CLASSIFIER_SCORED
from incidentflow.metrics import record_classification
from incidentflow.service import ServiceRuntime
from incidentflow.steps import Delivery
from services.classifier import store
from services.classifier.classify import Classification, Classifier


def register(runtime: ServiceRuntime, classifier: Classifier, review_threshold: float) -> None:
    classifications = runtime.step_writes(store.save_classifications)

    def needs_review(event: IncidentScored, result: Classification) -> bool:
        # A person checks the category when the model is unsure, and the mood when sentiment
        # could not score it (a language it has no method for).
        return result.confidence < review_threshold or event.sentiment == "unknown"

    @runtime.step(CLASSIFIER_SCORED)
    async def classify(deliveries: list[Delivery[IncidentScored]]) -> None:
        """Classified in one call (the local model embeds them together; Gemini's calls run
        concurrently, bounded by its client), written together, each announced as
        incident.classified."""
        events = [delivery.event for delivery in deliveries]
        results = await classifier.classify_many([event.message for event in events])
        decided: list[store.Decided] = [
            (event, result, needs_review(event, result))
            for event, result in zip(events, results, strict=True)
        ]
        await classifications.submit_all(decided)
        for delivery, (event, result, review) in zip(deliveries, decided, strict=True):
            delivery.emit(
                event.next_step(
                    IncidentClassified,
                    "classified",
                    classification=result.category,
                    confidence=result.confidence,
                    reason=result.reason,
                    classifier_model=result.model,
                    needs_review=review,
                ),
                "incident classified",
                category=result.category,
                confidence=result.confidence,
                model=result.model,
            )
            # Observability: counted once written (an event retried after a failed publish
            # counts again).
            record_classification(result.category, result.model, result.confidence)
