"""Sentiment's subscribers: incident.received → score → incident.scored; and the customer's
later messages (incident.message_received) scored into the conversation's trend."""

from __future__ import annotations

import logging

from contracts.events import (
    IncidentMessageReceived,
    IncidentReceived,
    IncidentScored,
)
from contracts.topology import SENTIMENT_MESSAGE, SENTIMENT_RECEIVED
from incidentflow.service import ServiceRuntime
from incidentflow.steps import Delivery
from services.sentiment import store
from services.sentiment.score import SentimentScorer

log = logging.getLogger("incidentflow.sentiment")


def register(runtime: ServiceRuntime, scorer: SentimentScorer) -> None:
    scores = runtime.step_writes(store.save_scores)

    @runtime.step(SENTIMENT_RECEIVED)
    async def score_incidents(deliveries: list[Delivery[IncidentReceived]]) -> None:
        """Scored together (one call), written together, each announced as incident.scored."""
        events = [delivery.event for delivery in deliveries]
        scored = list(
            zip(events, scorer.score_many([event.message for event in events]), strict=True)
        )
        await scores.submit_all(scored)
        for delivery, (event, score) in zip(deliveries, scored, strict=True):
            delivery.emit(
                event.next_step(
                    IncidentScored,
                    "scored",
                    sentiment=score.sentiment,
                    polarity=score.polarity,
                    language=score.language,
                ),
                "incident scored",
                sentiment=score.sentiment,
                language=score.language,
            )

    message_scores = runtime.step_writes(store.save_message_scores)

    @runtime.step(SENTIMENT_MESSAGE)
    async def score_messages(deliveries: list[Delivery[IncidentMessageReceived]]) -> None:
        """The mood of what the customer wrote since; nothing is published: the message has
        no step after this one."""
        events = [delivery.event for delivery in deliveries]
        scored = list(
            zip(events, scorer.score_many([event.message for event in events]), strict=True)
        )
        await message_scores.submit_all(scored)
        for event, score in scored:
            log.info(
                "message scored",
                extra={"incident_id": str(event.incident_id), "sentiment": score.sentiment},
            )
