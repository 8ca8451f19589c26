"""Gemini backend through google-genai: structured JSON output constrained to the 7 categories."""

from __future__ import annotations

import asyncio

from google import genai
from google.genai import errors, types
from pydantic import BaseModel, Field

from contracts.events import Category
from incidentflow.concurrency import AdaptiveLimit
from services.classifier.classify import Classification

SYSTEM_PROMPT = """You classify messages that customers send to a payments company's support team.
Classify into ONE of 7 categories:
1. duplicate_payment - Charged 2+ times
2. failed_payment - Failed but charged
3. fraud_report - Unauthorized transaction
4. refund_request - Wants money back
5. account_locked - Can't log in
6. statement_error - Balance discrepancy
7. other - Doesn't fit above
Answer with the category, your confidence between 0 and 1, and a short reason."""


class GeminiAnswer(BaseModel):
    """The JSON schema Gemini must answer in; the category is an enum of the seven."""

    category: Category
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(max_length=500)


# Gemini's answers that mean "fewer calls at once, please".
OVERLOADED = (429, 503)


class GeminiClassifier:
    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout_seconds: float = 10.0,
        attempts: int = 3,
        max_concurrency: int = 8,
    ) -> None:
        self.model = model
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout_seconds * 1000),
                retry_options=types.HttpRetryOptions(
                    attempts=attempts,
                    initial_delay=0.5,
                    max_delay=8.0,
                    http_status_codes=[429, 500, 502, 503, 504],
                ),
            ),
        )
        self._timeout = timeout_seconds * attempts + 5
        # Calls in flight: grows while Gemini answers, halves when it says it is overloaded
        # (a free-tier key allows a few requests per second; a paid one many more).
        self.in_flight = AdaptiveLimit("gemini", max_concurrency, initial=8)

    async def classify(self, text: str) -> Classification:
        async with self.in_flight.slot() as slot:
            try:
                response = await asyncio.wait_for(
                    self._client.aio.models.generate_content(
                        model=self.model,
                        contents=text,
                        config=types.GenerateContentConfig(
                            system_instruction=SYSTEM_PROMPT,
                            temperature=0,
                            response_mime_type="application/json",
                            response_schema=GeminiAnswer,
                        ),
                    ),
                    timeout=self._timeout,
                )
            except errors.APIError as exc:
                # Still 429 or 503 after the client's own retries: too many calls at once.
                if exc.code in OVERLOADED:
                    slot.overloaded()
                raise
            except TimeoutError:
                slot.overloaded()
                raise
        answer = GeminiAnswer.model_validate_json(response.text or "")
        return Classification(
            category=answer.category,
            confidence=round(answer.confidence, 4),
            reason=answer.reason,
            model=f"gemini:{self.model}",
        )
