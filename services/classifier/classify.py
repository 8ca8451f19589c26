"""The classification step, pure: the Classifier protocol and the result every backend returns."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
    """A backend that puts customer messages into one of the seven categories."""

    async def classify(self, text: str) -> Classification: ...

    async def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        """A batch's messages in one go (the local model embeds them in one call)."""
        ...


class OneByOne(Protocol):
    """A backend asked one message at a time (an outside API)."""

    async def classify(self, text: str) -> Classification: ...


class FallbackClassifier:
    """Asks ``primary`` first; on any failure, ``fallback`` decides (and is recorded as such)."""

    def __init__(self, primary: OneByOne, fallback: Classifier) -> None:
        self.primary = primary
        self.fallback = fallback

    async def classify(self, text: str) -> Classification:
        return (await self.classify_many([text]))[0]

    async def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        # The primary's calls run concurrently (its client bounds them); whatever failed is
        # decided by the fallback, together.
        answers = await asyncio.gather(
            *(self.primary.classify(text) for text in texts), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancellation and interrupts are not a backend's failure
        failed = [i for i, answer in enumerate(answers) if isinstance(answer, Exception)]
        decided = iter(await self.fallback.classify_many([texts[i] for i in failed]))
        return [
            answer if isinstance(answer, Classification) else next(decided) for answer in answers
        ]
