"""The sentiment scorer as the service runs it, built from its settings (the CLI uses it too)."""

from services.sentiment.evaluate import SHIPPED_LABELED
from services.sentiment.language import LanguageDetector
from services.sentiment.lexicon import ensure_vader_lexicon
from services.sentiment.meaning import default_meaning
from services.sentiment.score import SentimentScorer
from services.sentiment.settings import SentimentSettings


def build_scorer(settings: SentimentSettings) -> SentimentScorer:
    ensure_vader_lexicon(settings.nltk_data)
    return SentimentScorer(
        settings.thresholds,
        meaning=default_meaning(settings.model_dir, SHIPPED_LABELED),
        languages=LanguageDetector(
            ["en", *settings.languages], min_confidence=settings.language_min_confidence
        ),
        second=settings.second_reading,
    )
