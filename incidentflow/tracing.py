"""OpenTelemetry tracing: one trace per incident, across the six services and their messages.

FastStream's RabbitTelemetryMiddleware carries the W3C trace context in message headers; this
module sets up the process's TracerProvider it reports to, moves the context across ingest's
outbox (stored with the event, restored when the relay publishes it) and puts the trace id on
every log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.response import RabbitPublishCommand
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

NAMESPACE = "incidentflow"

T = TypeVar("T")

_provider: TracerProvider | None = None


def configure_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """The process's TracerProvider, exporting over OTLP/HTTP when an endpoint is configured.

    Without one, spans are not recorded (sampled out: nothing would read them, and recording
    costs every message a good part of its CPU), but they still carry the trace context, so
    it still propagates and log lines still carry trace ids. Once per process: OpenTelemetry's
    global provider cannot be replaced, so later calls (tests building several apps in one
    process) get the first one.
    """
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service, SERVICE_NAMESPACE: NAMESPACE}),
        sampler=None if otlp_endpoint else ALWAYS_OFF,
    )
    if otlp_endpoint:
        # Imported only when used: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The generic OTLP endpoint is a base URL; traces go to its /v1/traces, as the SDK
        # itself does with OTEL_EXPORTER_OTLP_ENDPOINT. Batch size and delay come from the
        # standard OTEL_BSP_* variables.
        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def flush_spans(timeout_millis: int = 5000) -> None:
    """Export what is batched, so a stopping service does not lose its last spans."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def instrument_broker(broker: RabbitBroker, *, exporting: bool) -> None:
    """Carry every message's trace context in its headers; with an exporter, trace them.

    Outermost middleware, so everything inside it (delivery policy, handler, logs) runs
    within the message's context. FastStream's telemetry middleware makes spans (and OTel
    metrics) for every consume and publish, which costs about as much CPU as the publish
    itself: worth it only when the spans go somewhere.
    """
    broker.insert_middleware(RabbitTelemetryMiddleware() if exporting else TraceContext)


class TraceContext(BaseMiddleware[RabbitPublishCommand]):
    """Trace context through the broker without spans: a consumed message's context (a new
    trace's when it carries none) is current while it is handled, and what the handler
    publishes carries it on. One incident stays one trace id in every log line."""

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        carried = propagate.extract(msg.headers or {})
        if not trace.get_current_span(carried).get_span_context().is_valid:
            carried = trace.set_span_in_context(trace.NonRecordingSpan(_new_span_context()))
        token = context.attach(carried)
        try:
            return await call_next(msg)
        finally:
            context.detach(token)

    async def publish_scope(
        self,
        call_next: Callable[[RabbitPublishCommand], Awaitable[Any]],
        cmd: RabbitPublishCommand,
    ) -> Any:
        propagate.inject(cmd.headers)
        return await call_next(cmd)


_ids = RandomIdGenerator()


def _new_span_context() -> trace.SpanContext:
    return trace.SpanContext(
        trace_id=_ids.generate_trace_id(), span_id=_ids.generate_span_id(), is_remote=False
    )


def current_trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (traceparent, tracestate), for an event's
    ``trace`` field: ingest stores it with the outbox row, the relay publishes under it."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def publish_context(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context in ``carrier`` current, so what is published inside the block
    continues that trace (the outbox relay publishing an incident accepted earlier)."""
    token = context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        context.detach(token)


async def traced(carrier: Mapping[str, str], operation: Awaitable[T]) -> T:
    """Await ``operation`` under the trace context in ``carrier``. Run as its own task (as
    asyncio.gather does), each publish of a batch continues its own incident's trace."""
    with publish_context(carrier):
        return await operation


async def each_traced(operations: Iterable[tuple[Mapping[str, str], Awaitable[T]]]) -> list[T]:
    """Await each ``(carrier, operation)`` under its own trace context, concurrently (the events
    of a whole batch, each published and logged in its incident's trace); the first failure is
    raised once every operation has finished."""
    outcomes = await asyncio.gather(
        *(traced(carrier, operation) for carrier, operation in operations),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]  # no exception among them


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to each record, so a log line
    leads to its trace and the trace to every line of the incident."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = trace.format_trace_id(span_context.trace_id)
            record.span_id = trace.format_span_id(span_context.span_id)
        return True


def install_log_filter() -> None:
    """Put TraceContextFilter on the root logger's handlers (configure_logging's JSON one).

    On the handlers, not the logger: a logger's filters skip records propagated from its
    children.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(TraceContextFilter())
