"""/metrics of a real service process: FastStream's message metrics and ours move with the work."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from contracts.events import IncidentScored
from contracts.topology import CLASSIFIER_SCORED, EVENTS, TICKETING_CLASSIFIED
from incidentflow.messaging import declare_topology, make_broker
from incidentflow.metrics import instrument_ingest
from incidentflow.settings import CommonSettings
from incidentflow_tools.sandbox import own_vhost
from tests.conftest import RABBITMQ_URL, free_port
from tests.e2e.conftest import insert_ticketed_incident, publish, start_service

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
QUEUE = CLASSIFIER_SCORED.queue_name


def scrape(url: str) -> Samples:
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def wait_for(url: str, condition: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if condition(samples):
            return samples
        assert time.monotonic() < deadline, "metrics did not move in time"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def classifier(
    rabbitmq_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The classifier as a real process on a vhost of its own; (its URL, the broker URL)."""
    var = tmp_path_factory.mktemp("metrics")
    # A vhost of its own: the subscriber must not share its queue with other tests' services.
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base) as broker_url:
        port = free_port()
        process = start_service(
            "classifier",
            port,
            {
                "RABBITMQ_URL": broker_url,
                "DATABASE_URL": database_url,
                # The model `make install` trained (var/model): training one at start takes
                # longer than the readiness wait on a slow machine.
            },
            var / "classifier.log",
        )
        try:
            yield f"http://127.0.0.1:{port}", broker_url
        finally:
            process.terminate()
            process.wait(30)


async def test_handling_a_message_moves_faststream_and_classifier_metrics(
    classifier: tuple[str, str], database_url: str
) -> None:
    url, broker_url = classifier
    before = scrape(url)
    ticketed = await insert_ticketed_incident(database_url)
    scored = IncidentScored(
        incident_id=ticketed.incident_id,
        customer_id=ticketed.customer_id,
        channel=ticketed.channel,
        message="I was charged twice for the same order, please refund one of them",
        email=ticketed.email,
        created_at=ticketed.created_at,
        sentiment="negative",
        polarity=-0.5,
    )
    # Somewhere for incident.classified to go: unroutable events are refused, not dropped.
    broker = make_broker(broker_url, prefetch=1)
    await broker.connect()
    try:
        await declare_topology(broker, (TICKETING_CLASSIFIED,))
    finally:
        await broker.stop()
    await publish(broker_url, scored)

    def moved(s: Samples) -> bool:
        return value(s, "incidentflow_classifications_total") > value(
            before, "incidentflow_classifications_total"
        )

    after = wait_for(url, moved)
    for name, labels in [
        ("faststream_received_messages_total", {"handler": QUEUE}),
        ("faststream_received_processed_messages_total", {"handler": QUEUE, "status": "acked"}),
        ("faststream_received_processed_messages_duration_seconds_count", {"handler": QUEUE}),
        (
            "faststream_published_messages_total",
            {"destination": "incidentflow.events.incident.classified.v1", "status": "success"},
        ),
        (
            "incidentflow_step_duration_seconds_count",
            {"service": "classifier", "step": "incident-scored"},
        ),
        ("incidentflow_classification_confidence_count", {}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels) + 1, name
    # The label set says which model decided and what it decided.
    assert any(
        n == "incidentflow_classifications_total"
        and dict(ls).get("category")
        and dict(ls).get("model")
        for n, ls in after
    )


async def test_a_dead_letter_shows_in_the_dead_letter_gauge(classifier: tuple[str, str]) -> None:
    url, broker_url = classifier
    dlq = CLASSIFIER_SCORED.dead_letter_queue.name
    before = value(scrape(url), "incidentflow_dead_letter_messages", queue=dlq)
    broker = make_broker(broker_url, prefetch=1)
    await broker.connect()
    try:
        # Not an incident.scored event at all: the delivery policy dead-letters it at once.
        await broker.publish(
            {"incident_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat()},
            exchange=EVENTS,
            routing_key=CLASSIFIER_SCORED.routing_key,
            persist=True,
        )
    finally:
        await broker.stop()
    after = wait_for(
        url, lambda s: value(s, "incidentflow_dead_letter_messages", queue=dlq) == before + 1
    )
    # The work queue is drained: the gauge that the stalled-consumer alert reads says so.
    assert value(after, "incidentflow_queue_ready_messages", queue=QUEUE) == 0


@pytest.fixture(scope="module")
def instrumented_api(rabbitmq_url: str) -> Iterator[str]:
    """A FastAPI app instrumented as ingest is, served by a real uvicorn; its URL."""
    app = FastAPI()

    @app.get("/api/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    instrument_ingest(app, make_broker(rabbitmq_url, prefetch=1), CommonSettings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_ingest_http_latency_is_recorded_per_route_template(instrumented_api: str) -> None:
    labels = {"method": "GET", "route": "/api/things/{thing_id}", "status": "200"}
    name = "incidentflow_http_request_duration_seconds_count"
    before = value(scrape(instrumented_api), name, **labels)
    for thing_id in (1, 2):
        assert httpx.get(f"{instrumented_api}/api/things/{thing_id}").status_code == 200
    assert httpx.get(f"{instrumented_api}/nowhere").status_code == 404
    after = scrape(instrumented_api)
    # One series per route template, not per URL: ids do not make new series.
    assert value(after, name, **labels) == before + 2
    assert value(after, name, method="GET", route="unmatched", status="404") >= 1
    assert not any("route" in dict(ls) and "/api/things/1" in dict(ls)["route"] for _, ls in after)
