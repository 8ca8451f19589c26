"""The ticketing service: ``uvicorn services.ticketing.app:app``."""

import httpx
from faststream.asgi import AsgiFastStream

from contracts.topology import TICKETING_CLASSIFIED
from incidentflow.service import ServiceRuntime
from services.ticketing.adapters.rest import RestTicketSystem
from services.ticketing.handlers import register
from services.ticketing.settings import TicketingSettings
from services.ticketing.tickets import TicketSystem


def create_app(settings: TicketingSettings | None = None) -> AsgiFastStream:
    settings = settings or TicketingSettings()
    runtime = ServiceRuntime("ticketing", settings, (TICKETING_CLASSIFIED,))
    tickets: TicketSystem | None = None
    if settings.url:
        client = httpx.AsyncClient(timeout=settings.timeout_seconds)
        token = settings.token.get_secret_value() if settings.token else None
        tickets = RestTicketSystem(client, settings.url, token)
        runtime.on_stopping.append(client.aclose)
    register(runtime, tickets)
    return runtime.asgi_app()


app = create_app()
