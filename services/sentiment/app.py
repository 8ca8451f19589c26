"""The sentiment service: ``uvicorn services.sentiment.app:app`` (or ``faststream run``)."""

from faststream.asgi import AsgiFastStream

from contracts.topology import SENTIMENT_RECEIVED
from incidentflow.service import ServiceRuntime
from services.sentiment.assemble import build_scorer
from services.sentiment.handlers import register
from services.sentiment.settings import SentimentSettings


def create_app(settings: SentimentSettings | None = None) -> AsgiFastStream:
    settings = settings or SentimentSettings()
    runtime = ServiceRuntime("sentiment", settings, (SENTIMENT_RECEIVED,))
    register(runtime, build_scorer(settings))
    return runtime.asgi_app()


app = create_app()
