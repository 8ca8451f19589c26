"""The ticketing service: ``uvicorn services.ticketing.app:app``."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import httpx
from faststream.asgi import AsgiFastStream
from pydantic import SecretStr

from incidentflow.service import ServiceRuntime
from services.ticketing.adapters.jira import JiraTicketSystem
from services.ticketing.adapters.local import LocalTicketSystem
from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.adapters.zendesk import ZendeskTicketSystem
from services.ticketing.handlers import register
from services.ticketing.policy import CircuitBreaker, GuardedTicketSystem, RetryPolicy
from services.ticketing.reconcile import Reconciler
from services.ticketing.settings import TicketingSettings
from services.ticketing.tickets import TicketSystem


def ticket_system(
    settings: TicketingSettings,
    client: httpx.AsyncClient,
    pool: Callable[[], asyncpg.Pool],
) -> TicketSystem:
    """The backend TICKETING_BACKEND names (the settings checked it is configured)."""

    if settings.backend == "rest":
        return RestTicketSystem(client, str(settings.url), _secret(settings.token) or None)
    if settings.backend == "zendesk":
        return ZendeskTicketSystem(
            client,
            settings.zendesk_base_url,
            str(settings.zendesk_email),
            _secret(settings.zendesk_api_token),
        )
    if settings.backend == "jira":
        return JiraTicketSystem(
            client,
            str(settings.url),
            str(settings.jira_email),
            _secret(settings.jira_api_token),
            str(settings.jira_project),
            settings.jira_issue_type,
        )
    return LocalTicketSystem(pool)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def guarded(settings: TicketingSettings, system: TicketSystem) -> GuardedTicketSystem:
    return GuardedTicketSystem(
        system,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            deadline_seconds=settings.create_deadline_seconds,
        ),
        breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_reset_seconds),
        max_concurrency=settings.max_concurrency,
    )


def build_runtime(settings: TicketingSettings) -> ServiceRuntime:
    """The service with its handlers registered, not started."""
    runtime = ServiceRuntime("ticketing", settings)
    client = httpx.AsyncClient(
        timeout=settings.timeout_seconds,
        limits=httpx.Limits(max_connections=settings.max_concurrency),
    )
    tickets = guarded(settings, ticket_system(settings, client, lambda: runtime.pool))
    reconciler = Reconciler(
        runtime.name,
        lambda: runtime.pool,
        tickets,
        tickets.breaker,
        interval_seconds=settings.reconcile_interval_seconds,
        lease_seconds=settings.reconcile_lease_seconds,
    )
    runtime.on_started.append(reconciler.start)
    # Stopped before the client and the pool close under it.
    runtime.on_stopping.extend([reconciler.stop, client.aclose])
    register(runtime, tickets)
    return runtime


def create_app(settings: TicketingSettings | None = None) -> AsgiFastStream:
    return build_runtime(settings or TicketingSettings()).asgi_app()


app = create_app()
