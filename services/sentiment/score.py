"""The sentiment step, pure: VADER compound score mapped to negative / neutral / positive."""

from __future__ import annotations

from dataclasses import dataclass

from nltk.sentiment.vader import SentimentIntensityAnalyzer

from contracts.events import Sentiment


@dataclass(frozen=True)
class Thresholds:
    """Seed design: below -0.1 negative, above 0.1 positive, neutral between."""

    negative_below: float = -0.1
    positive_above: float = 0.1

    def label(self, compound: float) -> Sentiment:
        if compound < self.negative_below:
            return "negative"
        if compound > self.positive_above:
            return "positive"
        return "neutral"


@dataclass(frozen=True)
class Score:
    sentiment: Sentiment
    polarity: float


class SentimentScorer:
    """Scores messages with NLTK VADER (lexicon provisioned by ``ensure_vader_lexicon``)."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self._vader = SentimentIntensityAnalyzer()

    def score(self, text: str) -> Score:
        compound = round(float(self._vader.polarity_scores(text)["compound"]), 4)
        return Score(sentiment=self.thresholds.label(compound), polarity=compound)
