"""What every FastStream service shares: its lifespan (migrations, pool), health probes,
metrics and tracing."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import asyncpg
from aio_pika.exceptions import AMQPConnectionError
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.rabbit import RabbitBroker
from faststream.rabbit.subscriber import RabbitSubscriber
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import DBAPIError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from contracts.events import Envelope
from contracts.topology import Route, passive
from incidentflow.asyncapi import service_document
from incidentflow.batching import Batcher
from incidentflow.db import create_pool, migrate
from incidentflow.heap import freeze_startup_heap
from incidentflow.logs import configure_logging
from incidentflow.messaging import BatchPublisher, declare_routes, make_broker
from incidentflow.metrics import instrument_messaging, render_metrics
from incidentflow.settings import CommonSettings
from incidentflow.steps import Step, StepFunction
from incidentflow.tracing import configure_tracing, flush_spans, install_log_filter

log = logging.getLogger("incidentflow.service")

Hook = Callable[[], Awaitable[None]]


def _log_start_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "dependencies not reachable yet, retrying",
        extra={"event": "start_retry", "error": repr(error)},
    )


T = TypeVar("T")
E = TypeVar("E", bound=Envelope)


async def _as_service(
    write: Callable[[asyncpg.Connection, str, Sequence[T]], Awaitable[None]],
    service: str,
    conn: asyncpg.Connection,
    items: Sequence[T],
) -> None:
    await write(conn, service, items)


class ServiceRuntime:
    """A service's broker and database pool, opened and closed with the process."""

    def __init__(self, name: str, settings: CommonSettings) -> None:
        self.name = name
        self.settings = settings
        # Filled by ``step``: the queues this service reads, by name.
        self._routes: dict[str, Route] = {}
        self.broker: RabbitBroker = make_broker(settings.rabbitmq_url, settings.prefetch)
        # The steps that take a batch whole, by queue name (incidentflow.batched_events).
        self._whole_batches: dict[str, Step[Any]] = {}
        instrument_messaging(
            self.broker,
            name,
            exporting=bool(settings.otel_exporter_otlp_endpoint),
            events_in_flight=settings.prefetch,
            whole_batches=self._whole_batches,
        )
        # What this service's handlers publish, batched while the broker confirms the last.
        self.events = BatchPublisher(self.broker)
        self._pool: asyncpg.Pool | None = None
        self._consuming = False
        # Run once connected, before any subscriber consumes: topology the handlers publish to.
        self.on_connected: list[Hook] = []
        self.on_started: list[Hook] = []
        self.on_stopping: list[Hook] = []

    def step(
        self, route: Route, *, whole_batches: bool = True
    ) -> Callable[[StepFunction[E]], StepFunction[E]]:
        """Declare the decorated function as the step for ``route``'s queue
        (incidentflow.steps): the one way a service consumes. At start, the route's queue,
        its retry binding and its dead-letter queue are declared from the steps, so none
        can be forgotten. ``whole_batches=False``: the step sees its events one at a time."""

        def declare(function: StepFunction[E]) -> StepFunction[E]:
            if route.queue_name in self._routes:
                raise ValueError(f"{self.name}: a second step for {route.queue_name}")
            self._routes[route.queue_name] = route
            step: Step[Any] = Step(
                queue=route.queue_name,
                model=route.event,
                function=function,
                publisher=self.events,
                log=logging.getLogger(f"incidentflow.{self.name}"),
                broker=self.broker,
            )
            source = route.source if self.settings.declare_topology else passive(route.source)
            self.broker.subscriber(route.queue, source)(step.subscriber_handler())
            if whole_batches:
                self._whole_batches[route.queue_name] = step
            return function

        return declare

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes this service consumes, in the order its handlers were registered."""
        return tuple(self._routes.values())

    def _check_every_subscriber_has_a_route(self) -> None:
        """A subscriber made on the broker directly would have no retry binding and no
        dead-letter queue: its failures would be dropped. Refuse to start with one."""
        stray = [
            subscriber.queue.name
            for subscriber in self.broker.subscribers
            if isinstance(subscriber, RabbitSubscriber)
            and subscriber.queue.name not in self._routes
        ]
        if stray:
            raise RuntimeError(
                f"{self.name}: queues {stray} are consumed without ServiceRuntime.step, "
                "so they would have no retry binding and no dead-letter queue"
            )

    def step_writes(
        self, write: Callable[[asyncpg.Connection, str, Sequence[T]], Awaitable[None]]
    ) -> Batcher[T, None]:
        """Group commit for this service's step writes: ``write(conn, service, items)``."""
        return Batcher.pooled_writes(lambda: self.pool, partial(_as_service, write, self.name))

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: database pool used before start")
        return self._pool

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        configure_logging(self.name, self.settings.log_level)
        install_log_filter()
        configure_tracing(self.name, self.settings.otel_exporter_otlp_endpoint)
        self._check_every_subscriber_has_a_route()
        await self._connect()
        if self.settings.declare_topology:
            await declare_routes(self.broker, self.routes)
        for hook in self.on_connected:
            await hook()
        log.info("service starting", extra={"event": "start"})
        try:
            yield
        finally:
            self._consuming = False
            for hook in self.on_stopping:
                await hook()
            await self.pool.close()
            self._pool = None
            log.info("service stopped", extra={"event": "stop"})
            flush_spans()

    async def _connect(self) -> None:
        """Migrations, pool and broker connection, retried while either server restarts: a
        service started during a Postgres or RabbitMQ restart waits rather than exits."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(
                (OSError, asyncpg.PostgresError, DBAPIError, AMQPConnectionError)
            ),
            wait=wait_exponential_jitter(initial=0.5, max=5),
            stop=stop_after_delay(self.settings.startup_wait_seconds),
            before_sleep=_log_start_retry,
            reraise=True,
        ):
            with attempt:
                if self.settings.migrate_on_start:
                    await migrate(self.settings.database_url)
                if self._pool is None:
                    self._pool = await create_pool(
                        self.settings.database_url, self.settings.db_pool_size
                    )
                # Dead-letter queues exist before the first message could need one.
                await self.broker.connect()

    async def ready(self) -> bool:
        """Ready means consuming (queues declared and bound), and broker and database answer."""
        if not self._consuming or self._pool is None or not await self.broker.ping(timeout=2):
            return False
        try:
            async with self._pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        return True

    def asgi_app(self) -> AsgiFastStream:
        @get(include_in_schema=False)
        async def live(scope: object) -> AsgiResponse:
            return AsgiResponse(
                b'{"status":"live"}', 200, headers={"content-type": "application/json"}
            )

        @get(include_in_schema=False)
        async def ready(scope: object) -> AsgiResponse:
            if await self.ready():
                return AsgiResponse(
                    b'{"status":"ready"}', 200, headers={"content-type": "application/json"}
                )
            return AsgiResponse(
                b'{"status":"not ready"}', 503, headers={"content-type": "application/json"}
            )

        @get(include_in_schema=False)
        async def metrics(scope: object) -> AsgiResponse:
            body = await render_metrics(self.broker, self.routes)
            return AsgiResponse(body, 200, headers={"content-type": CONTENT_TYPE_LATEST})

        @get(include_in_schema=False)
        async def asyncapi(scope: object) -> AsgiResponse:
            """What this service consumes and publishes (incidentflow/asyncapi.py)."""
            body = json.dumps(service_document(self.name, self.broker)).encode()
            return AsgiResponse(body, 200, headers={"content-type": "application/json"})

        async def after_startup() -> None:
            # The broker has started: every subscriber's queue is declared and bound, so an
            # event published from now on reaches this service.
            self._consuming = True
            for hook in self.on_started:
                await hook()
            freeze_startup_heap()

        return AsgiFastStream(
            self.broker,
            lifespan=self.lifespan,
            after_startup=[after_startup],
            asgi_routes=[
                ("/health/live", live),
                ("/health/ready", ready),
                ("/metrics", metrics),
                ("/asyncapi", asyncapi),
            ],
        )
