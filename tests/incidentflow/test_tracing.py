"""Trace context through a real broker without an exporter: no spans, one trace id throughout."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from faststream.rabbit import RabbitBroker
from opentelemetry import trace

from contracts.events import Event
from contracts.topology import EVENTS, Route
from incidentflow.messaging import declare_routes, make_broker, publish_event
from incidentflow.tracing import instrument_broker
from tests.incidentflow.test_messaging import until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class FirstHop(Event):
    name = "test.first-hop"


class SecondHop(Event):
    name = "test.second-hop"


def current_trace_id() -> str:
    return trace.format_trace_id(trace.get_current_span().get_span_context().trace_id)


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    broker = make_broker(rabbitmq_url, prefetch=10)
    instrument_broker(broker, exporting=False)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


async def test_the_trace_id_travels_in_the_headers_across_hops(broker: RabbitBroker) -> None:
    suffix = uuid.uuid4().hex[:6]
    first, second = Route(f"a{suffix}", FirstHop), Route(f"b{suffix}", SecondHop)
    await declare_routes(broker, (first, second))
    seen: dict[str, list[str]] = {"first": [], "second": []}

    @broker.subscriber(first.queue, first.source)
    async def on_first(event: FirstHop) -> None:
        seen["first"].append(current_trace_id())
        await publish_event(broker, SecondHop(incident_id=event.incident_id))

    @broker.subscriber(second.queue, second.source)
    async def on_second(event: SecondHop) -> None:
        seen["second"].append(current_trace_id())

    await broker.start()
    # One message carries a trace (as ingest's outbox does), one carries none.
    await broker.publish(
        FirstHop(incident_id=uuid.uuid4()).model_dump(mode="json"),
        exchange=EVENTS,
        routing_key=first.routing_key,
        headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"},
    )
    await until(lambda: len(seen["second"]) == 1)
    await broker.publish(
        FirstHop(incident_id=uuid.uuid4()).model_dump(mode="json"),
        exchange=EVENTS,
        routing_key=first.routing_key,
    )
    await until(lambda: len(seen["second"]) == 2)
    assert seen["first"][0] == seen["second"][0] == TRACE_ID
    # A message without a trace starts one, and it is carried on just the same.
    new_trace = seen["first"][1]
    assert new_trace != "0" * 32 and new_trace != TRACE_ID
    assert seen["second"][1] == new_trace
