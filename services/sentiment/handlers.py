"""Sentiment's subscriber: incident.received → score → incident.scored."""

from __future__ import annotations

import logging

from contracts.events import IncidentReceived, IncidentScored, derived_event_id
from contracts.topology import SENTIMENT_RECEIVED
from incidentflow.service import ServiceRuntime
from services.sentiment import store
from services.sentiment.score import SentimentScorer

log = logging.getLogger("incidentflow.sentiment")


def register(runtime: ServiceRuntime, scorer: SentimentScorer) -> None:
    scores = runtime.step_writes(store.save_scores)

    @runtime.broker.subscriber(SENTIMENT_RECEIVED.queue, SENTIMENT_RECEIVED.source)
    async def on_incident_received(event: IncidentReceived) -> None:
        score = scorer.score(event.message)
        await scores.submit((event, score))
        scored = IncidentScored(
            **event.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(event.incident_id, "scored"),
            sentiment=score.sentiment,
            polarity=score.polarity,
        )
        await runtime.events.publish(scored)
        log.info(
            "incident scored",
            extra={"incident_id": str(event.incident_id), "sentiment": score.sentiment},
        )
