"""The classification step, pure: the Classifier protocol and the result every backend returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from contracts.events import Category


@dataclass(frozen=True)
class Classification:
    category: Category
    confidence: float
    reason: str
    model: str


class Classifier(Protocol):
    """A backend that puts a customer message into one of the seven categories."""

    async def classify(self, text: str) -> Classification: ...


class FallbackClassifier:
    """Asks ``primary`` first; on any failure, ``fallback`` decides (and is recorded as such)."""

    def __init__(self, primary: Classifier, fallback: Classifier) -> None:
        self.primary = primary
        self.fallback = fallback

    async def classify(self, text: str) -> Classification:
        try:
            return await self.primary.classify(text)
        except Exception:  # any backend failure: the local model always answers
            return await self.fallback.classify(text)
