"""The sentiment service: ``uvicorn services.sentiment.app:app`` (or ``faststream run``)."""

from faststream.asgi import AsgiFastStream

from contracts.topology import SENTIMENT_RECEIVED
from incidentflow.service import ServiceRuntime
from services.sentiment.handlers import register
from services.sentiment.lexicon import ensure_vader_lexicon
from services.sentiment.score import SentimentScorer
from services.sentiment.settings import SentimentSettings


def create_app(settings: SentimentSettings | None = None) -> AsgiFastStream:
    settings = settings or SentimentSettings()
    ensure_vader_lexicon(settings.nltk_data)
    runtime = ServiceRuntime("sentiment", settings, (SENTIMENT_RECEIVED,))
    register(runtime, SentimentScorer(settings.thresholds))
    return runtime.asgi_app()


app = create_app()
