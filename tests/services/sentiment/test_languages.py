"""Languages: detection, the embedding reader for other languages and for sarcasm, and the
multilingual held-out rows (written for evaluation, never trained on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.sentiment.assemble import build_scorer
from services.sentiment.evaluate import by_language, read_labeled
from services.sentiment.language import LanguageDetector
from services.sentiment.score import SecondReading, SentimentScorer
from services.sentiment.settings import SentimentSettings

MULTILINGUAL = Path(__file__).resolve().parents[3] / "data/classifier/multilingual-heldout.csv"


@pytest.fixture(scope="module")
def service() -> SentimentScorer:
    return build_scorer(SentimentSettings())


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Me han cobrado dos veces la misma compra y nadie me responde, estoy harta", "es"),
        ("Karte gesperrt, bitte helfen", "de"),
        ("mon compte est bloqué depuis hier", "fr"),
        ("cartão recusado no mercado de novo", "pt"),
        ("carta rifiutata al supermercato", "it"),
        ("I was charged TWICE!", "en"),
        # Short English that lingua alone takes for another language: English when unsure.
        ("whats the swift code", "en"),
        ("pls reset 2fa lost phone", "en"),
        ("", "en"),
    ],
)
def test_language_is_detected_offline(text: str, language: str) -> None:
    assert LanguageDetector().detect(text) == language


def test_issue_messages_score_negative(service: SentimentScorer) -> None:
    sarcasm = "Great, so I was charged for the same Uber ride AGAIN. Fantastic job guys."
    harm = "You charged me interest on a purchase I paid in full"
    spanish = "Me han cobrado dos veces la misma compra y nadie me responde, estoy harta"
    scores = service.score_many([sarcasm, harm, spanish])
    assert [s.sentiment for s in scores] == ["negative", "negative", "negative"]
    assert [s.language for s in scores] == ["en", "en", "es"]
    assert all(s.polarity < 0 for s in scores)


def test_the_seed_calm_report_and_genuine_praise_keep_their_mood(service: SentimentScorer) -> None:
    calm = service.score("I noticed duplicate charges. Please investigate.")
    praise = service.score("Great, that fixed it, thanks!")
    assert (calm.sentiment, praise.sentiment) == ("neutral", "positive")


def test_an_unsure_reading_of_another_language_is_unknown_never_english_vader(
    service: SentimentScorer,
) -> None:
    """With a bar no reading reaches, every non-English message is ``unknown``; English is
    still VADER's."""
    assert service.meaning is not None
    strict = SentimentScorer(
        meaning=service.meaning,
        languages=service.languages,
        second=SecondReading(min_confidence=1.01, min_positive=1.01),
    )
    spanish, english = strict.score_many(["Gracias, todo perfecto!!", "I was charged TWICE!"])
    assert (spanish.sentiment, spanish.polarity, spanish.language) == ("unknown", 0.0, "es")
    assert english.sentiment == "negative"


def test_multilingual_held_out_rows(service: SentimentScorer) -> None:
    reports = by_language(service, read_labeled(MULTILINGUAL))
    assert {r.language for r in reports} == {"es", "de", "fr", "pt", "it"}
    for report in reports:
        assert report.rows >= 60
        assert report.negative_scored_positive == 0, report.line()
        assert report.language_detected >= 0.97, report.line()
        assert report.accuracy >= 0.6, report.line()
