"""Sentiment's subscribers: incident.received → score → incident.scored; and the customer's
later messages (incident.message_received) scored into the conversation's trend."""

from __future__ import annotations

import logging

from contracts.events import (
    IncidentMessageReceived,
    IncidentReceived,
    IncidentScored,
    derived_event_id,
)
from contracts.topology import SENTIMENT_MESSAGE, SENTIMENT_RECEIVED
from incidentflow.service import ServiceRuntime
from incidentflow.tracing import each_traced
from services.sentiment import store
from services.sentiment.score import Score, SentimentScorer

log = logging.getLogger("incidentflow.sentiment")


def register(runtime: ServiceRuntime, scorer: SentimentScorer) -> None:
    scores = runtime.step_writes(store.save_scores)

    async def announce(event: IncidentReceived, score: Score) -> None:
        scored = IncidentScored(
            **event.model_dump(exclude={"event_id", "occurred_at"}),
            event_id=derived_event_id(event.incident_id, "scored"),
            sentiment=score.sentiment,
            polarity=score.polarity,
            language=score.language,
        )
        await runtime.events.publish(scored)
        log.info(
            "incident scored",
            extra={
                "incident_id": str(event.incident_id),
                "sentiment": score.sentiment,
                "language": score.language,
            },
        )

    @runtime.consume(SENTIMENT_RECEIVED)
    async def on_incident_received(event: IncidentReceived) -> None:
        (score,) = scorer.score_many([event.message])
        await scores.submit((event, score))
        await announce(event, score)

    async def on_batch(events: list[IncidentReceived]) -> None:
        """A batch's events together: one write, then each published (and logged) under its
        own incident's trace, which it carries, as the per-event chain would have."""
        batch_scores = scorer.score_many([event.message for event in events])
        scored = list(zip(events, batch_scores, strict=True))
        await scores.submit_all(scored)
        # One failed: the batch goes the per-event way, and what went out goes again, as on
        # a redelivery (the next steps are idempotent).
        await each_traced((event.trace, announce(event, score)) for event, score in scored)

    runtime.handle_batches(SENTIMENT_RECEIVED, IncidentReceived, on_batch)

    message_scores = runtime.step_writes(store.save_message_scores)

    @runtime.consume(SENTIMENT_MESSAGE)
    async def on_message_received(event: IncidentMessageReceived) -> None:
        """The mood of what the customer wrote since; nothing is published: the message has
        no step after this one."""
        (score,) = scorer.score_many([event.message])
        await message_scores.submit((event, score))
        log.info(
            "message scored",
            extra={"incident_id": str(event.incident_id), "sentiment": score.sentiment},
        )
