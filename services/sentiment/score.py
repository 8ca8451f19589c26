"""The sentiment step, pure: the message's language, and its mood.

English is scored by VADER with the payments domain layer; a second reader
(``services.sentiment.meaning``) checks what VADER finds positive (sarcasm) or neutral (harm told
flatly) and overrules it when it is sure the customer is unhappy. Other languages are never
scored with the English lexicon: the second reader scores them, or says ``unknown`` when it is
not sure, and a person then reads the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nltk.sentiment.vader import SentimentIntensityAnalyzer

from contracts.events import Sentiment
from services.sentiment.domain import DomainLayer
from services.sentiment.language import ENGLISH, LanguageDetector
from services.sentiment.lexicon import emoji_descriptions
from services.sentiment.meaning import MeaningSentiment


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
class SecondReading:
    """When the meaning-based reader decides instead of VADER."""

    # Another language: its answer counts when it is at least this sure, else "unknown";
    # positive needs more. Chosen on the labeled set's tuning part (docs/quality.md).
    min_confidence: float = 0.5
    min_positive: float = 0.8
    # English: VADER's positive becomes negative when the reader is this sure it is (sarcasm),
    # and VADER's neutral when the reader is surer still: a calm report ("I noticed duplicate
    # charges. Please investigate.") stays neutral. Chosen on the tuning part.
    overrule_positive: float = 0.6
    overrule_neutral: float = 0.8


@dataclass(frozen=True)
class Score:
    sentiment: Sentiment
    polarity: float
    language: str = ENGLISH


class SentimentScorer:
    """Scores messages with NLTK VADER (lexicon provisioned by ``ensure_vader_lexicon``), and,
    given ``languages`` and ``meaning``, detects each message's language and lets the embedding
    reader score other languages and check VADER's English positives and neutrals (the module
    docstring). The service builds it with all of them (``services.sentiment.assemble``).

    ``domain=True`` (the default) adds the payments-support layer of
    ``services.sentiment.domain``; ``domain=False`` is plain VADER, kept for comparison.
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        domain: bool = True,
        meaning: MeaningSentiment | None = None,
        languages: LanguageDetector | None = None,
        second: SecondReading | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.meaning = meaning
        self.languages = languages
        self.second = second or SecondReading()
        self._overrule = {
            "positive": self.second.overrule_positive,
            "neutral": self.second.overrule_neutral,
        }
        self._vader = SentimentIntensityAnalyzer()
        self._domain: DomainLayer | None = None
        if domain:
            self._domain = DomainLayer(emoji_descriptions())
            self._domain.apply(self._vader.lexicon)

    @property
    def domain(self) -> bool:
        return self._domain is not None

    def score(self, text: str) -> Score:
        return self.score_many([text])[0]

    def score_many(self, texts: Sequence[str]) -> list[Score]:
        """A batch's messages; the ones the second reader looks at are embedded in one call."""
        languages = [self._language(text) for text in texts]
        scores = [
            self._vader_score(text) if language == ENGLISH else Score("unknown", 0.0, language)
            for text, language in zip(texts, languages, strict=True)
        ]
        if self.meaning is None:
            return scores
        second = [i for i, score in enumerate(scores) if score.sentiment != "negative"]
        readings = self.meaning.read([texts[i] for i in second])
        for i, reading in zip(second, readings, strict=True):
            if languages[i] != ENGLISH:
                label = reading.label(self.second.min_confidence, self.second.min_positive)
                polarity = 0.0 if label == "unknown" else reading.polarity
                scores[i] = Score(label, polarity, languages[i])
            elif reading.negative >= self._overrule[scores[i].sentiment]:
                scores[i] = Score("negative", reading.polarity, ENGLISH)
        return scores

    def _language(self, text: str) -> str:
        return self.languages.detect(text) if self.languages is not None else ENGLISH

    def _vader_score(self, text: str) -> Score:
        if self._domain is not None:
            text = self._domain.rewrite(text)
        compound = round(float(self._vader.polarity_scores(text)["compound"]), 4)
        return Score(sentiment=self.thresholds.label(compound), polarity=compound)
