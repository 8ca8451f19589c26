"""Classifier settings (prefix CLASSIFIER_; the Gemini key keeps its usual name)."""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings
from services.classifier.adapters.local import SHIPPED_DATA

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "var" / "model"


class ClassifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", extra="ignore")

    prefetch: int = Field(20, ge=1, le=1000)
    model_dir: Path | None = DEFAULT_MODEL_DIR
    # Used when model_dir holds no model: a model is trained from it at start.
    training_data: Path = SHIPPED_DATA
    # Below this confidence an incident is flagged for a human to check its category.
    review_threshold: float = Field(0.6, ge=0, le=1)
    gemini_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GEMINI_API_KEY", "CLASSIFIER_GEMINI_API_KEY")
    )
    gemini_model: str = "gemini-2.0-flash"
    gemini_base_url: str | None = None
    gemini_timeout_seconds: float = Field(10.0, gt=0)
    # The most Gemini calls in flight; the bound adapts below it (incidentflow/concurrency.py).
    gemini_max_concurrency: int = Field(64, ge=1)
