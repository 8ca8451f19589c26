"""Which language a customer wrote in: lingua, offline, limited to the languages expected.

Lingua ships its n-gram models in its wheel and is accurate on short text. It is asked only
about the languages the pipeline answers in (``LANGUAGES``, or ``SENTIMENT_LANGUAGES``): each
language more costs about 27 MB of models in memory, and is one more way for a short English
message ("whats the swift code") to look foreign. A non-English answer counts only when lingua
gives it at least ``min_confidence``; below that the message is taken as English, the language
every reply falls back to anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from lingua import IsoCode639_1, LanguageDetectorBuilder

# The languages the pipeline answers in.
LANGUAGES = ("en", "es", "de", "fr", "pt", "it")
ENGLISH = "en"


class LanguageDetector:
    def __init__(self, languages: Sequence[str] = LANGUAGES, min_confidence: float = 0.5) -> None:
        codes = [IsoCode639_1.from_str(code) for code in dict.fromkeys(languages)]
        self._detector = (
            LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
            .with_preloaded_language_models()
            .build()
        )
        self.min_confidence = min_confidence

    def detect(self, text: str) -> str:
        """The message's language as ISO 639-1, English when unsure."""
        values = self._detector.compute_language_confidence_values(text)
        if not values:
            return ENGLISH
        best = values[0]
        code = best.language.iso_code_639_1.name.lower()
        return code if best.value >= self.min_confidence else ENGLISH
