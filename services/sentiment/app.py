"""The sentiment service: ``uvicorn services.sentiment.app:app`` (or ``faststream run``)."""

from faststream.asgi import AsgiFastStream

from incidentflow.service import ServiceRuntime
from services.sentiment.assemble import build_scorer
from services.sentiment.handlers import register
from services.sentiment.settings import SentimentSettings


def build_runtime(settings: SentimentSettings) -> ServiceRuntime:
    """The service with its handlers registered, not started."""
    runtime = ServiceRuntime("sentiment", settings)
    register(runtime, build_scorer(settings))
    return runtime


def create_app(settings: SentimentSettings | None = None) -> AsgiFastStream:
    return build_runtime(settings or SentimentSettings()).asgi_app()


app = create_app()
