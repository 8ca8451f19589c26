"""Sentiment: the seed's three samples keep the seed's results; thresholds are configurable."""

from __future__ import annotations

from pathlib import Path

import nltk
import pytest

from services.sentiment.lexicon import ensure_vader_lexicon
from services.sentiment.score import SentimentScorer, Thresholds
from services.sentiment.settings import SentimentSettings


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    ensure_vader_lexicon(SentimentSettings().nltk_data)
    return SentimentScorer()


def test_furious_customer_is_strongly_negative(scorer: SentimentScorer) -> None:
    score = scorer.score("I am FURIOUS! I was charged TWICE! This is absolutely ridiculous!")
    assert score.sentiment == "negative" and score.polarity <= -0.85


def test_professional_report_is_neutral(scorer: SentimentScorer) -> None:
    score = scorer.score("I noticed duplicate charges. Please investigate.")
    assert score.sentiment == "neutral" and -0.1 <= score.polarity <= 0.1


def test_grateful_customer_is_positive(scorer: SentimentScorer) -> None:
    score = scorer.score("Thank you for fixing this so quickly! Excellent service!")
    assert score.sentiment == "positive" and score.polarity >= 0.7


@pytest.mark.parametrize(
    ("compound", "label"),
    [(-0.5, "negative"), (-0.1, "neutral"), (0.0, "neutral"), (0.1, "neutral"), (0.5, "positive")],
)
def test_seed_thresholds(compound: float, label: str) -> None:
    assert Thresholds().label(compound) == label


def test_thresholds_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_NEGATIVE_BELOW", "-0.5")
    monkeypatch.setenv("SENTIMENT_POSITIVE_ABOVE", "0.5")
    thresholds = SentimentSettings().thresholds
    assert thresholds.label(-0.3) == "neutral" and thresholds.label(-0.6) == "negative"


def test_lexicon_is_provisioned_offline(tmp_path: Path) -> None:
    ensure_vader_lexicon(tmp_path)
    # nltk finds it under the new directory alone, and it holds VADER's 7,500 entries.
    found = nltk.data.find(
        "sentiment/vader_lexicon.zip/vader_lexicon/vader_lexicon.txt", paths=[str(tmp_path)]
    )
    assert len(found.open().read().decode().splitlines()) > 7000
