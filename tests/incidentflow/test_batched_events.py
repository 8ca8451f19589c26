"""Batched events against a real RabbitMQ: one message on the wire, each event handled,
traced, retried and dead-lettered on its own."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from opentelemetry import trace
from prometheus_client import REGISTRY

from contracts.events import Event
from contracts.topology import EVENTS, Route
from incidentflow.batched_events import (
    BATCH_CONTENT_TYPE,
    BATCH_HEADER,
    BatchStep,
    decode_batch,
    encode_batch,
    event_bodies,
)
from incidentflow.messaging import (
    RETRIES_HEADER,
    BatchPublisher,
    declare_routes,
    make_broker,
    publish_batch,
)
from incidentflow.metrics import instrument_messaging
from incidentflow.steps import Delivery, Step
from incidentflow.tracing import traced
from tests.incidentflow.test_messaging import drain, until


class BatchedProbe(Event):
    name = "test.batched-probe"
    note: str


class OtherProbe(Event):
    name = "test.other-probe"
    note: str


class ProbeOutput(Event):
    """What the probe step publishes (nothing else publishes it, nothing else binds it)."""

    name = "test.probe-output"
    note: str


def traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


def published(destination: str, status: str) -> float:
    labels = {"app_name": "batches", "broker": "rabbitmq", "destination": destination}
    sample = REGISTRY.get_sample_value(
        "faststream_published_messages_total", {**labels, "status": status}
    )
    return sample or 0.0


def failed(route: Route, outcome: str) -> float:
    service, _, step = route.queue_name.partition(".")
    labels = {"service": service, "step": step, "outcome": outcome}
    return REGISTRY.get_sample_value("incidentflow_failed_deliveries_total", labels) or 0.0


def batch_events(destination: str) -> tuple[float, float]:
    """(messages, events) observed by incidentflow_published_batch_events."""
    labels = {"destination": destination}
    count = REGISTRY.get_sample_value("incidentflow_published_batch_events_count", labels)
    total = REGISTRY.get_sample_value("incidentflow_published_batch_events_sum", labels)
    return count or 0.0, total or 0.0


def steps(route: Route) -> float:
    service, _, step = route.queue_name.partition(".")
    labels = {"service": service, "step": step}
    return REGISTRY.get_sample_value("incidentflow_step_duration_seconds_count", labels) or 0.0


@pytest.fixture(params=[False, True], ids=["context-only", "spans"])
def exporting(request: pytest.FixtureRequest) -> bool:
    """Without or with an exporter configured (FastStream's telemetry middleware, making a
    span per event)."""
    return bool(request.param)


@pytest.fixture
def whole_batches() -> dict[str, BatchStep]:
    """The consuming broker's steps that take batches whole, as ServiceRuntime.step fills
    them in."""
    return {}


@pytest.fixture
async def consuming(
    rabbitmq_url: str, exporting: bool, whole_batches: dict[str, BatchStep]
) -> AsyncIterator[RabbitBroker]:
    """A broker set up as ServiceRuntime sets up every service's."""
    broker = make_broker(rabbitmq_url, prefetch=10)
    instrument_messaging(
        broker,
        "batches",
        exporting=exporting,
        events_in_flight=50,
        whole_batches=whole_batches,
    )
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


async def bound_queue(broker: RabbitBroker, event: type[Event] = BatchedProbe) -> str:
    """A queue of ``event`` with nobody consuming it: the test reads what arrived."""
    route = Route(f"batches{uuid.uuid4().hex[:6]}", event)
    declared = await broker.declare_queue(route.queue)
    await declared.bind(await broker.declare_exchange(EVENTS), event.routing_key())
    return declared.name


async def test_a_batch_is_one_message_each_event_keeping_its_trace_context(
    consuming: RabbitBroker, rabbitmq_url: str
) -> None:
    queue = await bound_queue(consuming)
    destination = f"{EVENTS.name}.{BatchedProbe.routing_key()}"
    before = published(destination, "success")
    events_before = batch_events(destination)
    events = [BatchedProbe(incident_id=uuid.uuid4(), note=str(i)) for i in range(3)]
    contexts = [traceparent() for _ in events]
    await publish_batch(consuming, events, headers=[{"traceparent": tp} for _, tp in contexts])
    await publish_batch(consuming, [events[0]], headers=[{"traceparent": contexts[0][1]}])

    batch, single = await drain(rabbitmq_url, queue, timeout=1.5)
    assert batch.content_type == BATCH_CONTENT_TYPE
    assert (batch.headers or {})[BATCH_HEADER] == 3
    assert batch.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert batch.type == BatchedProbe.name
    parts = decode_batch(batch.body)
    assert [BatchedProbe.model_validate_json(p.body) for p in parts] == events
    assert [p.message_id for p in parts] == [str(e.event_id) for e in events]
    assert [p.headers["traceparent"] for p in parts] == [tp for _, tp in contexts]
    # One event goes as an ordinary message, as if published alone.
    assert single.content_type == "application/json"
    assert BATCH_HEADER not in (single.headers or {})
    assert BatchedProbe.model_validate_json(single.body) == events[0]
    assert (single.headers or {})["traceparent"] == contexts[0][1]
    assert single.message_id == str(events[0].event_id)
    # Counted per message, in FastStream's own series, and how many events each carried.
    assert published(destination, "success") == before + 2
    assert batch_events(destination) == (events_before[0] + 2, events_before[1] + 3 + 1)

    with pytest.raises(ValueError, match="one kind"):
        await publish_batch(consuming, [events[0], OtherProbe(incident_id=uuid.uuid4(), note="")])
    unheard = OtherProbe(incident_id=uuid.uuid4(), note="nobody listens")
    errors = published(f"{EVENTS.name}.{OtherProbe.routing_key()}", "error")
    with pytest.raises(Exception):  # noqa: B017 - aio-pika's DeliveryError on basic.return
        await publish_batch(consuming, [unheard, unheard])
    assert published(f"{EVENTS.name}.{OtherProbe.routing_key()}", "error") == errors + 1


async def test_each_event_of_a_batch_is_handled_retried_and_dead_lettered_on_its_own(
    consuming: RabbitBroker, rabbitmq_url: str
) -> None:
    route = Route(f"batches{uuid.uuid4().hex[:6]}", BatchedProbe)
    await declare_routes(consuming, (route,))
    handled: list[tuple[str, str, int]] = []
    message_ids: dict[str, str] = {}

    @consuming.subscriber(route.queue, route.source)
    async def on_probe(event: BatchedProbe, message: RabbitMessage) -> None:
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        handled.append((event.note, trace_id, int(message.headers.get(RETRIES_HEADER, 0))))
        # The handler's message is its event's, not the batch's.
        message_ids[event.note] = message.message_id
        if event.note == "flaky" and message.headers.get(RETRIES_HEADER) is None:
            raise ConnectionError("database restarting")

    await consuming.start()
    events = [BatchedProbe(incident_id=uuid.uuid4(), note=n) for n in ("ok-1", "flaky", "ok-2")]
    contexts = [traceparent() for _ in events]
    body = encode_batch(
        [(e, {"traceparent": tp}) for e, (_, tp) in zip(events, contexts, strict=True)]
    )
    # A poison event among them: the contract's incident_id is missing.
    poison = json.dumps({"message_id": "poison", "headers": {}}).encode() + b'\n{"note":"x"}'
    await consuming.publish(
        body + b"\n" + poison,
        exchange=EVENTS,
        routing_key=route.routing_key,
        headers={BATCH_HEADER: 4},
        content_type=BATCH_CONTENT_TYPE,
        persist=True,
    )

    await until(lambda: len(handled) >= 4)
    traces = {note: trace_id for note, trace_id, _ in handled}
    # Each event under its own incident's trace.
    assert traces == {e.note: trace_id for e, (trace_id, _) in zip(events, contexts, strict=True)}
    # The flaky one alone came back (through the delay queues, its retry counted); its
    # batch-mates were handled once.
    assert sorted((n, r) for n, _, r in handled) == [
        ("flaky", 0),
        ("flaky", 1),
        ("ok-1", 0),
        ("ok-2", 0),
    ]
    assert message_ids == {e.note: str(e.event_id) for e in events}
    # Counted per event, where the alert on failing deliveries reads them.
    assert (failed(route, "retried"), failed(route, "dead-lettered")) == (1, 1)
    # The poison event alone in the dead-letter queue, with why.
    dead = await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=1)
    assert [m.body for m in dead] == [b'{"note":"x"}']
    assert (dead[0].headers or {})["x-incidentflow-reason"] == "invalid-payload"
    assert BATCH_HEADER not in (dead[0].headers or {})
    assert dead[0].message_id == "poison"
    await asyncio.sleep(0.5)
    assert len(handled) == 4


async def test_a_batch_goes_whole_to_its_step_and_event_by_event_if_it_fails(
    consuming: RabbitBroker,
    whole_batches: dict[str, BatchStep],
    rabbitmq_url: str,
) -> None:
    route = Route(f"batches{uuid.uuid4().hex[:6]}", BatchedProbe)
    await declare_routes(consuming, (route,))
    out = await bound_queue(consuming, ProbeOutput)
    calls: list[list[str]] = []

    async def probe(deliveries: list[Delivery[BatchedProbe]]) -> None:
        calls.append([d.event.note for d in deliveries])
        if len(deliveries) > 1 and any(d.event.note == "fails-whole" for d in deliveries):
            raise ConnectionError("database restarting")
        for d in deliveries:
            d.emit(ProbeOutput(incident_id=d.event.incident_id, note=d.event.note), "probed")

    step = Step(
        queue=route.queue_name,
        model=BatchedProbe,
        function=probe,
        publisher=BatchPublisher(consuming),
        log=logging.getLogger("incidentflow.batches"),
        broker=consuming,
    )
    consuming.subscriber(route.queue, route.source)(step.subscriber_handler())
    whole_batches[route.queue_name] = step
    await consuming.start()
    steps_before = steps(route)

    def probes(*notes: str) -> list[BatchedProbe]:
        return [BatchedProbe(incident_id=uuid.uuid4(), note=n) for n in notes]

    await publish_batch(consuming, probes("a", "b", "c"))
    await until(lambda: steps(route) >= steps_before + 3)
    await publish_batch(consuming, probes("fails-whole", "d"))
    await publish_batch(consuming, probes("alone"))
    # A poison event in a batch: it cannot go whole.
    poison = json.dumps({"message_id": "poison", "headers": {}}).encode() + b'\n{"note":"x"}'
    await consuming.publish(
        encode_batch([(e, {}) for e in probes("e")]) + b"\n" + poison,
        exchange=EVENTS,
        routing_key=route.routing_key,
        headers={BATCH_HEADER: 2},
        content_type=BATCH_CONTENT_TYPE,
        persist=True,
    )
    # Every event handled counts once in the step histogram, whichever way it went (the
    # poison one too).
    await until(lambda: steps(route) >= steps_before + 8)
    dead = await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=1)
    assert [m.body for m in dead] == [b'{"note":"x"}']
    # Tracing exported or not, the same way: batches whole, what failed whole (and the
    # poisoned batch's good event, and a single message) one at a time.
    whole = sorted(c for c in calls if len(c) > 1)
    assert whole == [["a", "b", "c"], ["fails-whole", "d"]]
    assert sorted(c[0] for c in calls if len(c) == 1) == ["alone", "d", "e", "fails-whole"]
    # What the step emitted went out once per event, whichever way the event went.
    emitted = [
        ProbeOutput.model_validate_json(body).note
        for m in await drain(rabbitmq_url, out, timeout=1)
        for body in event_bodies(m.body, m.headers)
    ]
    assert sorted(emitted) == ["a", "alone", "b", "c", "d", "e", "fails-whole"]
    await asyncio.sleep(0.3)
    assert steps(route) == steps_before + 8
    assert failed(route, "dead-lettered") == 1


async def test_a_malformed_batch_is_dead_lettered_whole_with_the_reason(
    consuming: RabbitBroker, rabbitmq_url: str
) -> None:
    route = Route(f"batches{uuid.uuid4().hex[:6]}", BatchedProbe)
    await declare_routes(consuming, (route,))
    handled: list[BatchedProbe] = []

    @consuming.subscriber(route.queue, route.source)
    async def on_probe(event: BatchedProbe) -> None:
        handled.append(event)

    await consuming.start()
    await consuming.publish(
        b"three\nodd\nlines",
        exchange=EVENTS,
        routing_key=route.routing_key,
        headers={BATCH_HEADER: 2},
        content_type=BATCH_CONTENT_TYPE,
        persist=True,
    )
    dead = await drain(rabbitmq_url, route.dead_letter_queue.name, timeout=2)
    assert [m.body for m in dead] == [b"three\nodd\nlines"]
    assert (dead[0].headers or {})["x-incidentflow-reason"] == "invalid-payload"
    assert handled == []


async def test_events_published_at_the_same_moment_share_messages_and_keep_their_traces(
    consuming: RabbitBroker, rabbitmq_url: str
) -> None:
    queue = await bound_queue(consuming)
    publisher = BatchPublisher(consuming)
    events = [BatchedProbe(incident_id=uuid.uuid4(), note=str(i)) for i in range(20)]
    contexts = [traceparent() for _ in events]
    await asyncio.gather(
        *(
            traced({"traceparent": tp}, publisher.publish(e))
            for e, (_, tp) in zip(events, contexts, strict=True)
        )
    )
    received = await drain(rabbitmq_url, queue, timeout=1.5)
    # All were handed over in the same turn of the loop: one message carries them.
    [batch] = received
    parts = decode_batch(batch.body)
    arrived = {BatchedProbe.model_validate_json(p.body).note: p.headers for p in parts}
    assert {note: h["traceparent"] for note, h in arrived.items()} == {
        e.note: tp for e, (_, tp) in zip(events, contexts, strict=True)
    }


async def test_each_caller_hears_of_its_own_event_when_a_batch_publish_fails(
    consuming: RabbitBroker, rabbitmq_url: str
) -> None:
    queue = await bound_queue(consuming)
    publisher = BatchPublisher(consuming)
    heard = BatchedProbe(incident_id=uuid.uuid4(), note="heard")
    unheard = [OtherProbe(incident_id=uuid.uuid4(), note=str(i)) for i in range(2)]
    outcomes = await asyncio.gather(
        publisher.publish(heard), *(publisher.publish(e) for e in unheard), return_exceptions=True
    )
    # One message per kind; the unroutable batch failed, then each of its events alone.
    assert outcomes[0] is None
    assert all(isinstance(o, Exception) for o in outcomes[1:])
    [message] = await drain(rabbitmq_url, queue, timeout=1)
    assert BatchedProbe.model_validate_json(message.body) == heard
