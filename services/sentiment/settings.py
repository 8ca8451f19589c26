"""Sentiment settings (prefix SENTIMENT_)."""

from pathlib import Path

from lingua import IsoCode639_1
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings
from services.sentiment.language import LANGUAGES
from services.sentiment.score import SecondReading, Thresholds

DEFAULT_NLTK_DATA = Path(__file__).resolve().parents[2] / "var" / "nltk_data"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "var" / "model"


class SentimentSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", extra="ignore")

    nltk_data: Path = DEFAULT_NLTK_DATA
    negative_below: float = Field(-0.1, ge=-1, le=0)
    positive_above: float = Field(0.1, ge=0, le=1)
    # Where `incidentflow provision` writes the meaning-based reader; trained at start if absent.
    model_dir: Path = DEFAULT_MODEL_DIR
    # The languages a message may be detected in (ISO 639-1; English is always one).
    languages: list[str] = Field(default_factory=lambda: list(LANGUAGES), min_length=1)
    # A language other than English counts from this lingua confidence on.
    language_min_confidence: float = Field(0.5, ge=0, le=1)
    # The meaning-based reader (services/sentiment/score.py says when each applies).
    min_confidence: float = Field(SecondReading.min_confidence, ge=0, le=1)
    min_positive: float = Field(SecondReading.min_positive, ge=0, le=1)
    overrule_positive: float = Field(SecondReading.overrule_positive, ge=0, le=1)
    overrule_neutral: float = Field(SecondReading.overrule_neutral, ge=0, le=1)

    @field_validator("languages")
    @classmethod
    def _languages_lingua_knows(cls, languages: list[str]) -> list[str]:
        for code in languages:
            try:
                IsoCode639_1.from_str(code)
            except ValueError:
                raise ValueError(f"{code!r} is not an ISO 639-1 code lingua knows") from None
        return languages

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(negative_below=self.negative_below, positive_above=self.positive_above)

    @property
    def second_reading(self) -> SecondReading:
        return SecondReading(
            self.min_confidence, self.min_positive, self.overrule_positive, self.overrule_neutral
        )
