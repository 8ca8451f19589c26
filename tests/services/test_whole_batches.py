"""Sentiment, classifier and ticketing take a batch of events whole: one call, one write, and
each event published on under its own incident's trace, as the per-event chain would have."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from faststream.rabbit import RabbitQueue

from contracts.events import (
    IncidentClassified,
    IncidentReceived,
    IncidentScored,
    IncidentTicketed,
)
from contracts.topology import CLASSIFIER_SCORED, EVENTS, SENTIMENT_RECEIVED, TICKETING_CLASSIFIED
from incidentflow.batched_events import decode_batch, is_batch
from incidentflow.messaging import make_broker, publish_batch
from incidentflow.service import ServiceRuntime
from incidentflow_tools.sandbox import own_vhost
from services.classifier.app import build_classifier
from services.classifier.handlers import register as register_classifier
from services.classifier.settings import ClassifierSettings
from services.sentiment.handlers import register as register_sentiment
from services.sentiment.lexicon import ensure_vader_lexicon
from services.sentiment.score import SentimentScorer
from services.sentiment.settings import SentimentSettings
from services.ticketing.adapters.local import LocalTicketSystem
from services.ticketing.handlers import register as register_ticketing
from services.ticketing.settings import TicketingSettings
from tests.services.incidents import classified_from, scored_from, stored_incident
from tests.steps import note_whole_batches

MESSAGES = (
    "I was charged twice for my order, refund the duplicate now!",
    "Someone used my card without permission, this is fraud",
    "My account is locked and I cannot log in to pay",
)


@pytest.fixture
def vhost_url(rabbitmq_url: str) -> Iterator[str]:
    with own_vhost(rabbitmq_url, "whole") as url:
        yield url


def traceparent() -> tuple[str, dict[str, str]]:
    trace_id = uuid.uuid4().hex
    return trace_id, {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-00"}


async def stored_incidents(pool: asyncpg.Pool) -> list[IncidentReceived]:
    """Three incidents as ingest stores them, each with a trace of its own."""
    return [await stored_incident(pool, message, traceparent()[1]) for message in MESSAGES]


def sentiment_runtime(vhost_url: str, database_url: str) -> ServiceRuntime:
    settings = SentimentSettings(RABBITMQ_URL=vhost_url, DATABASE_URL=database_url)
    ensure_vader_lexicon(settings.nltk_data)
    runtime = ServiceRuntime("sentiment", settings)
    register_sentiment(runtime, SentimentScorer(settings.thresholds))
    return runtime


def classifier_runtime(vhost_url: str, database_url: str) -> ServiceRuntime:
    settings = ClassifierSettings(RABBITMQ_URL=vhost_url, DATABASE_URL=database_url)
    runtime = ServiceRuntime("classifier", settings)
    register_classifier(runtime, build_classifier(settings), settings.review_threshold)
    return runtime


def ticketing_runtime(vhost_url: str, database_url: str) -> ServiceRuntime:
    settings = TicketingSettings(RABBITMQ_URL=vhost_url, DATABASE_URL=database_url)
    runtime = ServiceRuntime("ticketing", settings)
    register_ticketing(runtime, LocalTicketSystem(lambda: runtime.pool))
    return runtime


CASES: dict[str, tuple[Any, ...]] = {
    # runtime, its route, the events it takes, what it publishes, the column it sets
    "sentiment": (sentiment_runtime, SENTIMENT_RECEIVED, None, IncidentScored, "scored_at"),
    "classifier": (
        classifier_runtime,
        CLASSIFIER_SCORED,
        scored_from,
        IncidentClassified,
        "classified_at",
    ),
    "ticketing": (
        ticketing_runtime,
        TICKETING_CLASSIFIED,
        classified_from,
        IncidentTicketed,
        "ticketed_at",
    ),
}


async def bound_queue(url: str, name: str, routing_key: str) -> None:
    broker = make_broker(url, prefetch=1)
    await broker.connect()
    try:
        queue = await broker.declare_queue(RabbitQueue(name, durable=True))
        await queue.bind(await broker.declare_exchange(EVENTS), routing_key=routing_key)
    finally:
        await broker.stop()


async def published(url: str, queue_name: str, count: int) -> list[tuple[dict[str, Any], bytes]]:
    """The next ``count`` events on the queue, each with its own headers."""
    events: list[tuple[dict[str, Any], bytes]] = []
    connection = await aio_pika.connect(url)
    async with connection:
        queue = await (await connection.channel()).declare_queue(queue_name, passive=True)
        deadline = asyncio.get_running_loop().time() + 15
        while len(events) < count:
            message = await queue.get(fail=False)
            if message is None:
                assert asyncio.get_running_loop().time() < deadline, f"{len(events)} of {count}"
                await asyncio.sleep(0.1)
                continue
            if is_batch(message.headers):
                events += [(p.headers, p.body) for p in decode_batch(message.body)]
            else:
                events.append((dict(message.headers), message.body))
    return events


@pytest.mark.parametrize("service", CASES)
async def test_a_batch_goes_whole_and_each_event_keeps_its_own_trace(
    service: str, vhost_url: str, database_url: str, pool: asyncpg.Pool
) -> None:
    make_runtime, route, convert, output, column = CASES[service]
    runtime: ServiceRuntime = make_runtime(vhost_url, database_url)
    calls = note_whole_batches(runtime, route)
    received = await stored_incidents(pool)
    inputs: list[IncidentReceived | IncidentScored] = [
        convert(e) if convert else e for e in received
    ]
    out_queue = f"whole.{service}.out"
    await bound_queue(vhost_url, out_queue, output.routing_key())

    async with runtime.lifespan():
        await runtime.broker.start()
        try:
            # Published with headers of their own that are not their traces: what the step
            # publishes must carry each event's own trace, not the message's context.
            await publish_batch(runtime.broker, inputs, headers=[{} for _ in inputs])
            events = await published(vhost_url, out_queue, len(inputs))
        finally:
            await runtime.broker.stop()

    assert calls == [(len(inputs), "handled")]  # one call for the batch, not one per event
    by_incident = {output.model_validate_json(body).incident_id: h for h, body in events}
    for event in inputs:
        assert by_incident[event.incident_id]["traceparent"] == event.trace["traceparent"]
    done = await pool.fetchval(
        f"SELECT count(*) FROM incidents WHERE id = ANY($1::uuid[]) AND {column} IS NOT NULL",
        [e.incident_id for e in inputs],
    )
    assert done == len(inputs)
