"""The sentiment step, pure: VADER compound score mapped to negative / neutral / positive."""

from __future__ import annotations

from dataclasses import dataclass

from nltk.sentiment.vader import SentimentIntensityAnalyzer

from contracts.events import Sentiment
from services.sentiment.domain import DomainLayer
from services.sentiment.lexicon import emoji_descriptions


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
    """Scores messages with NLTK VADER (lexicon provisioned by ``ensure_vader_lexicon``).

    ``domain=True`` (the default) adds the payments-support layer of
    ``services.sentiment.domain``; ``domain=False`` is plain VADER, kept for comparison.
    """

    def __init__(self, thresholds: Thresholds | None = None, *, domain: bool = True) -> None:
        self.thresholds = thresholds or Thresholds()
        self._vader = SentimentIntensityAnalyzer()
        self._domain: DomainLayer | None = None
        if domain:
            self._domain = DomainLayer(emoji_descriptions())
            self._domain.apply(self._vader.lexicon)

    @property
    def domain(self) -> bool:
        return self._domain is not None

    def score(self, text: str) -> Score:
        if self._domain is not None:
            text = self._domain.rewrite(text)
        compound = round(float(self._vader.polarity_scores(text)["compound"]), 4)
        return Score(sentiment=self.thresholds.label(compound), polarity=compound)
