"""The payments domain layer over VADER: the issue's messages, emphasis, emoji, neutral finance
words, thresholds, quality on the held-out part of the labeled set, and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from services.sentiment.assemble import build_scorer
from services.sentiment.domain import CUES, NEUTRAL_WORDS, DomainLayer
from services.sentiment.evaluate import SHIPPED_LABELED, evaluate, read_labeled, split
from services.sentiment.lexicon import emoji_descriptions, ensure_vader_lexicon
from services.sentiment.score import SentimentScorer, Thresholds
from services.sentiment.settings import SentimentSettings


@pytest.fixture(scope="module", autouse=True)
def _lexicon() -> None:
    ensure_vader_lexicon(SentimentSettings().nltk_data)


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


@pytest.fixture(scope="module")
def plain() -> SentimentScorer:
    return SentimentScorer(domain=False)


# -- the five messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plain_vader"),
    [
        ("My credit card was charged twice", 0.2023),
        ("I can't log in, my account is locked and nobody helps", 0.3818),
    ],
)
def test_plain_vader_misreads_what_the_domain_layer_reads_as_negative(
    scorer: SentimentScorer, plain: SentimentScorer, text: str, plain_vader: float
) -> None:
    assert plain.score(text).polarity == pytest.approx(plain_vader, abs=0.01)
    assert plain.score(text).sentiment == "positive"
    assert scorer.score(text).sentiment == "negative"


def test_seed_samples_keep_their_results(scorer: SentimentScorer) -> None:
    furious = scorer.score("I am FURIOUS! I was charged TWICE! This is absolutely ridiculous!")
    assert furious.sentiment == "negative" and furious.polarity <= -0.85
    calm = scorer.score("I noticed duplicate charges. Please investigate.")
    assert calm.sentiment == "neutral" and -0.1 <= calm.polarity <= 0.1
    grateful = scorer.score("Thank you for fixing this so quickly! Excellent service!")
    assert grateful.sentiment == "positive" and grateful.polarity >= 0.7


# -- VADER's emphasis still works through the layer ------------------------------------------


def test_exclamation_marks_amplify_a_complaint_cue(scorer: SentimentScorer) -> None:
    assert scorer.score("charged twice!!!").polarity < scorer.score("charged twice").polarity < 0


def test_capitals_amplify_a_complaint_cue(scorer: SentimentScorer) -> None:
    shouted = scorer.score("I was charged TWICE for one order").polarity
    assert shouted < scorer.score("I was charged twice for one order").polarity < 0


def test_capitals_and_boosters_still_amplify_plain_words(scorer: SentimentScorer) -> None:
    assert scorer.score("this is BAD").polarity < scorer.score("this is bad").polarity < 0
    assert scorer.score("very helpful").polarity > scorer.score("helpful").polarity > 0


# -- emoji -----------------------------------------------------------------------------------


def test_angry_emoji_is_negative(scorer: SentimentScorer) -> None:
    assert scorer.score("😡").sentiment == "negative"
    assert scorer.score("card declined again 😡").sentiment == "negative"
    assert scorer.score("charged twice 😡").polarity < scorer.score("charged twice").polarity


@pytest.mark.parametrize("emoji", ["👍", "🙏", "😊"])
def test_approving_emoji_is_positive(scorer: SentimentScorer, emoji: str) -> None:
    assert scorer.score(emoji).sentiment == "positive"
    assert scorer.score(f"refund received {emoji}").sentiment == "positive"


def test_emoji_descriptions_come_from_vadersentiment() -> None:
    assert emoji_descriptions()["😭"] == "loudly crying face"


# -- neutral finance words -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Please send my credit card statement",
        "What is the interest rate on your credit card?",
        "Is my deposit protected up to the limit?",
        "What is the outstanding balance on my loan?",
        "How do I dispute a charge?",
        "Can you block my card please? Thanks, Sam",
        "Hello, I'd like to request a copy of my loan agreement. Kind regards, Ann Lee",
    ],
)
def test_finance_words_and_courtesy_are_neutral(scorer: SentimentScorer, text: str) -> None:
    score = scorer.score(text)
    assert score.sentiment == "neutral", score


def test_neutral_words_leave_the_lexicon_and_cue_tokens_enter_it() -> None:
    lexicon = {"credit": 1.6, "interest": 2.0, "furious": -2.7}
    DomainLayer(emoji_descriptions()).apply(lexicon)
    assert "credit" not in lexicon and "interest" not in lexicon and lexicon["furious"] == -2.7
    assert all(lexicon[cue.token] == cue.valence for cue in CUES)
    assert {"credit", "charge", "interest", "dispute"} <= NEUTRAL_WORDS


def test_sincere_thanks_survive_and_sign_offs_do_not() -> None:
    layer = DomainLayer(emoji_descriptions())
    assert layer.rewrite("Send my statement? Thanks, Tom").strip() == "Send my statement?"
    assert "Thank you" in layer.rewrite("Sorted in minutes. Thank you! Gemma")


# -- thresholds ------------------------------------------------------------------------------


def test_thresholds_default_to_a_tenth(scorer: SentimentScorer) -> None:
    assert scorer.thresholds == Thresholds(negative_below=-0.1, positive_above=0.1)


def test_thresholds_are_configurable_for_the_domain_scorer() -> None:
    text = "My credit card was charged twice"  # compound -0.46 with the domain layer
    assert SentimentScorer().score(text).sentiment == "negative"
    wide = SentimentScorer(Thresholds(negative_below=-0.5, positive_above=0.5))
    assert wide.score(text).sentiment == "neutral"


# -- quality on the labeled set --------------------------------------------------------------


def test_held_out_split_is_fixed() -> None:
    messages = read_labeled(SHIPPED_LABELED)
    tuning, held_out = split(messages)
    assert (len(messages), len(tuning), len(held_out)) == (1585, 1100, 485)
    assert split(reversed(messages))[1] == held_out[::-1]


@pytest.fixture(scope="module")
def service() -> SentimentScorer:
    return build_scorer(SentimentSettings())


def test_the_service_scorer_beats_plain_vader_on_english_held_out_rows(
    service: SentimentScorer, plain: SentimentScorer
) -> None:
    _, held_out = split(read_labeled(SHIPPED_LABELED))
    english = [m for m in held_out if m.language == "en"]
    result, plain_result = evaluate(service, english), evaluate(plain, english)
    assert result.macro_f1 >= 0.85
    assert result.macro_f1 > plain_result.macro_f1 + 0.2


def test_other_languages_held_out_never_read_unhappy_as_happy(service: SentimentScorer) -> None:
    _, held_out = split(read_labeled(SHIPPED_LABELED))
    others = [m for m in held_out if m.language != "en"]
    scores = service.score_many([m.text for m in others])
    assert len(others) >= 200
    assert not [
        m.text
        for m, s in zip(others, scores, strict=True)
        if m.sentiment == "negative" and s.sentiment == "positive"
    ]
    hits = sum(m.sentiment == s.sentiment for m, s in zip(others, scores, strict=True))
    assert hits / len(others) >= 0.7


# -- CLI -------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "incidentflow_tools.cli"]


def run(*args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return result.stdout


def test_cli_scores_one_json_line_per_message() -> None:
    stdin = (
        "My credit card was charged twice\n\nThank you so much 🙏\nWhat are your opening hours?\n"
    )
    lines = [json.loads(line) for line in run("sentiment", stdin=stdin).splitlines()]
    assert [(line["text"], line["sentiment"]) for line in lines] == [
        ("My credit card was charged twice", "negative"),
        ("Thank you so much 🙏", "positive"),
        ("What are your opening hours?", "neutral"),
    ]
    assert lines[0]["polarity"] == SentimentScorer().score(lines[0]["text"]).polarity


def test_cli_eval_prints_both_scorers_and_the_domain_figures_last() -> None:
    output = run("sentiment-eval", "--held-out")
    assert "plain VADER" in output and "incidentflow" in output and "other languages" in output
    last = output.strip().splitlines()[-1]
    match = re.fullmatch(r"accuracy=(0\.\d{3}) macro_f1=(0\.\d{3})", last)
    assert match and float(match[2]) >= 0.85
