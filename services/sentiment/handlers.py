"""Sentiment's subscriber: incident.received → score → incident.scored."""

from __future__ import annotations

import logging

from contracts.events import IncidentReceived, IncidentScored, derived_event_id
from contracts.topology import SENTIMENT_RECEIVED
from incidentflow.audit import record_handled
from incidentflow.messaging import publish_event
from incidentflow.service import ServiceRuntime
from services.sentiment import store
from services.sentiment.score import SentimentScorer

log = logging.getLogger("incidentflow.sentiment")


def register(runtime: ServiceRuntime, scorer: SentimentScorer) -> None:
    @runtime.broker.subscriber(SENTIMENT_RECEIVED.queue, SENTIMENT_RECEIVED.source)
    async def on_incident_received(event: IncidentReceived) -> None:
        score = scorer.score(event.message)
        async with runtime.pool.acquire() as conn, conn.transaction():
            if await record_handled(conn, runtime.name, event):
                await store.save_score(conn, event.incident_id, score)
        scored = IncidentScored(
            **event.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(event.incident_id, "scored"),
            sentiment=score.sentiment,
            polarity=score.polarity,
        )
        await publish_event(runtime.broker, scored)
        log.info(
            "incident scored",
            extra={"incident_id": str(event.incident_id), "sentiment": score.sentiment},
        )
