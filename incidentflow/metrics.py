"""Every Prometheus metric incidentflow exports, defined in one place, and the /metrics views.

FastStream's PrometheusMiddleware adds the ``faststream_*`` message metrics (received,
processed by status, durations, published) with the queue as ``handler``; the
``incidentflow_*`` metrics below are the domain's. deploy/prometheus/alerts.yaml uses both.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from faststream.prometheus.manager import MetricsManager
from faststream.prometheus.types import PublishingStatus
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus.provider import RabbitMetricsSettingsProvider
from faststream.rabbit.response import RabbitPublishCommand
from opentelemetry import propagate, trace
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from contracts.topology import DelayLevels, Route
from incidentflow.batched_events import BatchedEvents, BatchStep, consuming_queue
from incidentflow.settings import CommonSettings
from incidentflow.tracing import (
    configure_tracing,
    flush_spans,
    install_log_filter,
    instrument_broker,
)

if TYPE_CHECKING:
    from aio_pika import IncomingMessage
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("incidentflow.metrics")

PREFIX = "incidentflow"
# Seconds: from a few milliseconds (sentiment) to an LLM call timing out.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

STEP_DURATION = Histogram(
    f"{PREFIX}_step_duration_seconds",
    "Time one service step took for one message, from delivery to ack or nack.",
    ["service", "step"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUEST_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time ingest took to answer an HTTP request, by route template.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
CLASSIFICATIONS = Counter(
    f"{PREFIX}_classifications_total",
    "Incidents classified, by category and the model that decided.",
    ["category", "model"],
)
CLASSIFICATION_CONFIDENCE = Histogram(
    f"{PREFIX}_classification_confidence",
    "Confidence of each classification (0..1); low values go to human review.",
    ["model"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
NOTIFICATIONS = Counter(
    f"{PREFIX}_notifications_total",
    "Notification outcomes: sent, logged (no provider configured), queued (retry), failed, "
    "suppressed (a recipient over its limit, or a country texts may not go to).",
    ["channel", "kind", "status"],
)
FAILED_DELIVERIES = Counter(
    f"{PREFIX}_failed_deliveries",
    "Events whose handling failed, by what became of them: retried (through the delay "
    "queues) or dead-lettered. FastStream counts those messages as acked: the delivery "
    "policy acks a message once its copy is parked.",
    ["service", "step", "outcome"],
)
PUBLISHED_BATCH_EVENTS = Histogram(
    f"{PREFIX}_published_batch_events",
    "Events per message published by incidentflow.messaging.publish_batch (1: sent alone).",
    ["destination"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
REMINDER_LATENESS = Histogram(
    f"{PREFIX}_reminder_lateness_seconds",
    "Seconds after its due time that a reminder fired.",
    ["kind"],
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
DEAD_LETTER_MESSAGES = Gauge(
    f"{PREFIX}_dead_letter_messages",
    "Messages waiting in a dead-letter queue for an operator, read when scraped.",
    ["queue"],
)
QUEUE_READY_MESSAGES = Gauge(
    f"{PREFIX}_queue_ready_messages",
    "Messages waiting in a work queue for a consumer, read when scraped.",
    ["queue"],
)
OUTSIDE_CONCURRENCY = Gauge(
    f"{PREFIX}_outside_concurrency",
    "Calls to an outside system allowed in flight now (incidentflow/concurrency.py).",
    ["system"],
)

# How long a scrape waits for the broker to report queue depths before answering without.
QUEUE_DEPTH_TIMEOUT_SECONDS = 2.0
_DELAYED_DESTINATION = re.compile(
    rf"^{re.escape(DelayLevels.PREFIX)}\.\d+(?:\.[01]){{{DelayLevels.LEVELS}}}\."
)


def record_classification(category: str, model: str, confidence: float) -> None:
    CLASSIFICATIONS.labels(category=category, model=model).inc()
    CLASSIFICATION_CONFIDENCE.labels(model=model).observe(confidence)


def record_notification(channel: str, kind: str, status: str) -> None:
    """One notification outcome; call it wherever the notifier learns the outcome."""
    NOTIFICATIONS.labels(channel=channel, kind=kind, status=status).inc()


def record_reminder_lateness(kind: str, seconds_late: float) -> None:
    REMINDER_LATENESS.labels(kind=kind).observe(max(seconds_late, 0.0))


def queue_label(queue_name: str) -> str:
    """``<service>.<event>``: ingest's per-process acknowledgement queue has the process's
    name as a third part, which would make a new series on every restart."""
    return ".".join(queue_name.split(".")[:2])


def _step_labels(queue: str | None) -> dict[str, str]:
    """The step series of a queue: ``service`` and ``step`` from ``<service>.<event>``."""
    service, _, step = queue_label(queue or "unknown.unknown").partition(".")
    return {"service": service, "step": step}


class _QueueMetricsProvider(RabbitMetricsSettingsProvider):
    """FastStream's Rabbit metrics labelled by queue, not by exchange and routing key: two
    services consuming one event stay apart, and delayed messages' routing keys (their delay
    in binary digits) do not each make a series."""

    def __init__(self, broker: RabbitBroker) -> None:
        super().__init__()
        self._broker = broker

    def get_consume_attrs_from_message(self, msg: StreamMessage[IncomingMessage]) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        # Looked up now: the app that runs the broker gives it its own context at start.
        if (queue := consuming_queue(self._broker.context)) is not None:
            attrs["destination_name"] = queue_label(queue)
        return attrs

    def get_publish_destination_name_from_cmd(self, cmd: RabbitPublishCommand) -> str:
        name = super().get_publish_destination_name_from_cmd(cmd)
        return _DELAYED_DESTINATION.sub(f"{DelayLevels.PREFIX}.", name)


class _StepTimer(BaseMiddleware):
    async def consume_scope(
        self,
        call_next: Callable[[StreamMessage[Any]], Awaitable[Any]],
        msg: StreamMessage[Any],
    ) -> Any:
        labels = _step_labels(consuming_queue(self.context))
        start = time.perf_counter()
        try:
            return await call_next(msg)
        finally:
            STEP_DURATION.labels(**labels).observe(time.perf_counter() - start)


# Each instrumented broker's FastStream metrics, for publishes made past FastStream's publish
# path (incidentflow.messaging.publish_batch): they count in the same series.
_PUBLISH_METRICS: weakref.WeakKeyDictionary[RabbitBroker, MetricsManager] = (
    weakref.WeakKeyDictionary()
)


def instrument_messaging(
    broker: RabbitBroker,
    service: str,
    *,
    exporting: bool,
    events_in_flight: int,
    whole_batches: Mapping[str, BatchStep] | None = None,
) -> None:
    """The middlewares every broker of ours runs around the delivery policy (make_broker),
    outermost first:

    - FastStream's message metrics, per broker message (a batch counts once: ~60 µs of CPU
      per message, docs/performance.md), outside the delivery policy so they see its outcome;
    - BatchedEvents: each event of a batch goes through the rest as a message of its own,
      at most ``events_in_flight`` at once, or all to its queue's step in ``whole_batches``
      (incidentflow.steps; a batch handled whole has no consume span per event, but what
      its step publishes continues each event's trace);
    - the trace context (tracing.instrument_broker), then our step timer, per event.
    """
    broker.insert_middleware(_StepTimer)
    instrument_broker(broker, exporting=exporting)
    broker.insert_middleware(BatchedEvents.splitting(events_in_flight, whole_batches))
    prometheus = PrometheusMiddleware(
        settings_provider_factory=lambda _: _QueueMetricsProvider(broker),
        registry=REGISTRY,
        app_name=service,
    )
    broker.insert_middleware(prometheus)
    # FastStream keeps its metrics manager private and offers no other way to count a publish
    # in its series; the version is pinned, and tests/incidentflow/test_messaging.py
    # fails if this stops counting.
    _PUBLISH_METRICS[broker] = prometheus._metrics_manager


def observe_steps(queue: str, events: int, seconds: float) -> None:
    """``events`` handled together in ``seconds`` (a batch going whole to its step), each
    counted in the step histogram, as the step timer counts events handled one by one."""
    histogram = STEP_DURATION.labels(**_step_labels(queue))
    for _ in range(events):
        histogram.observe(seconds)


def record_failed_delivery(queue: str | None, outcome: str) -> None:
    """One event whose handling failed on ``queue``: ``retried`` or ``dead-lettered``."""
    FAILED_DELIVERIES.labels(**_step_labels(queue), outcome=outcome).inc()


def record_publish(
    broker: RabbitBroker,
    destination: str,
    error: BaseException | None,
    seconds: float,
    events: int,
) -> None:
    """Count a publish made outside FastStream's publish path as FastStream would
    (``faststream_published_messages_*``), and how many events the message carried."""
    PUBLISHED_BATCH_EVENTS.labels(destination=destination).observe(events)
    manager = _PUBLISH_METRICS.get(broker)
    if manager is None:
        return
    manager.observe_published_message_duration(seconds, "rabbitmq", destination)
    if error is not None:
        manager.add_published_message_exception("rabbitmq", destination, type(error).__name__)
    status = PublishingStatus.error if error else PublishingStatus.success
    manager.add_published_message("rabbitmq", destination, status)


async def refresh_queue_depths(broker: RabbitBroker, routes: tuple[Route, ...]) -> None:
    """Read the depth of ``routes``' work and dead-letter queues from the broker.

    Re-declaring with the queue's own arguments (not passively) answers with its message
    count, and cannot fail on a queue someone deleted: that would close the channel.
    """
    for route in routes:
        for definition, gauge in (
            (route.queue, QUEUE_READY_MESSAGES),
            (route.dead_letter_queue, DEAD_LETTER_MESSAGES),
        ):
            queue = await broker.declare_queue(definition)
            declared = await queue.declare(timeout=QUEUE_DEPTH_TIMEOUT_SECONDS)
            gauge.labels(queue=definition.name).set(declared.message_count or 0)


async def render_metrics(broker: RabbitBroker, routes: tuple[Route, ...]) -> bytes:
    """The exposition text; queue depths are refreshed first, the last values kept if the
    broker does not answer in time (readiness reports that)."""
    try:
        async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT_SECONDS):
            await refresh_queue_depths(broker, routes)
    except Exception as exc:  # a scrape must answer even when the broker is away
        log.warning("queue depths not refreshed", extra={"error": repr(exc)})
    return generate_latest(REGISTRY)


class _HttpObservability:
    """Ingest's HTTP requests: latency per route template, and a server span per request
    that the incident's trace starts from."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("incidentflow.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        # Callers on the internet do not choose our trace ids: a caller's context becomes a
        # link from a new trace, not its parent.
        caller = trace.get_current_span(propagate.extract(headers)).get_span_context()
        root = trace.set_span_in_context(trace.INVALID_SPAN)
        start = time.perf_counter()
        with self.tracer.start_as_current_span(
            method,
            kind=trace.SpanKind.SERVER,
            context=root,
            links=[trace.Link(caller)] if caller.is_valid else None,
        ) as span:
            try:
                await self.app(scope, receive, send_and_note_status)
            finally:
                # The router has put the matched route in the scope by now.
                route = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                HTTP_REQUEST_DURATION.labels(
                    method=method, route=route, status=str(status)
                ).observe(time.perf_counter() - start)


def instrument_ingest(
    app: FastAPI,
    broker: RabbitBroker,
    settings: CommonSettings,
    metrics_on: Sequence[FastAPI] = (),
) -> None:
    """Metrics and tracing for ingest: /metrics (on ``metrics_on``, ``app`` by default), HTTP
    latency, a span per request, the broker's message metrics and trace propagation, trace
    ids on log lines."""
    instrument_messaging(
        broker,
        "ingest",
        exporting=bool(settings.otel_exporter_otlp_endpoint),
        events_in_flight=settings.prefetch,
    )
    app.add_middleware(_HttpObservability)

    async def metrics() -> Response:
        return Response(await render_metrics(broker, ()), media_type=CONTENT_TYPE_LATEST)

    for target in metrics_on or (app,):
        target.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)

    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        configure_tracing("ingest", settings.otel_exporter_otlp_endpoint)
        async with app_lifespan(app) as state:
            # After the app's lifespan has configured logging, which replaces the handlers.
            install_log_filter()
            yield state
        flush_spans()

    app.router.lifespan_context = lifespan
