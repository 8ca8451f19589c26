"""Sentiment settings (prefix SENTIMENT_)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings
from services.sentiment.score import Thresholds

DEFAULT_NLTK_DATA = Path(__file__).resolve().parents[2] / "var" / "nltk_data"


class SentimentSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", extra="ignore")

    nltk_data: Path = DEFAULT_NLTK_DATA
    negative_below: float = Field(-0.1, ge=-1, le=0)
    positive_above: float = Field(0.1, ge=0, le=1)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(negative_below=self.negative_below, positive_above=self.positive_above)
