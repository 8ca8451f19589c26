"""Evaluation of the sentiment scorer on labeled messages: plain VADER vs the domain layer.

Used by ``incidentflow sentiment-eval``, the quality test and the benchmark. The labeled set
is split deterministically by a hash of the text: 30 % is held out. Only the tuning part was
looked at while writing the domain layer's lists; the held-out part is reported on its own.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from contracts.events import Sentiment
from services.sentiment.score import SentimentScorer

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_LABELED = REPO_ROOT / "data" / "sentiment" / "labeled.csv"
LABELS: tuple[Sentiment, ...] = ("negative", "neutral", "positive")
HELD_OUT_PERCENT = 30


@dataclass(frozen=True)
class LabeledMessage:
    text: str
    sentiment: Sentiment
    channel: str
    language: str = "en"


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    rows: int
    accuracy: float
    macro_f1: float
    per_class: dict[Sentiment, ClassMetrics]
    unknown: int = 0


def read_labeled(path: Path) -> list[LabeledMessage]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    messages = []
    for line, row in enumerate(rows, start=2):
        sentiment = (row.get("sentiment") or "").strip()
        if sentiment not in LABELS:
            raise ValueError(f"{path}:{line}: unknown sentiment {sentiment!r}")
        messages.append(
            LabeledMessage(
                text=row["text"],
                sentiment=cast(Sentiment, sentiment),
                channel=(row.get("channel") or "").strip(),
                language=(row.get("language") or "en").strip(),
            )
        )
    return messages


def is_held_out(text: str) -> bool:
    """A fixed 30 % of any labeled set, chosen by the sha256 of the normalised text."""
    digest = hashlib.sha256(text.strip().lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HELD_OUT_PERCENT


def split(
    messages: Iterable[LabeledMessage],
) -> tuple[list[LabeledMessage], list[LabeledMessage]]:
    """(tuning, held_out)."""
    tuning: list[LabeledMessage] = []
    held_out: list[LabeledMessage] = []
    for message in messages:
        (held_out if is_held_out(message.text) else tuning).append(message)
    return tuning, held_out


def evaluate(scorer: SentimentScorer, messages: Sequence[LabeledMessage]) -> Evaluation:
    truth = [message.sentiment for message in messages]
    predicted = [score.sentiment for score in scorer.score_many([m.text for m in messages])]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(LABELS), zero_division=0
    )
    per_class = {
        label: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, label in enumerate(LABELS)
    }
    return Evaluation(
        rows=len(messages),
        accuracy=float(accuracy_score(truth, predicted)),
        # over the three moods; "unknown" (another language the reader was unsure of) counts
        # as a miss of the true mood, never as a class of its own
        macro_f1=float(
            f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0)
        ),
        unknown=predicted.count("unknown"),
        per_class=per_class,
    )


def side_by_side(title: str, plain: Evaluation, domain: Evaluation) -> list[str]:
    """A text table: per-class precision / recall / F1, plain VADER beside the service's
    scorer (the domain layer, the embedding reader and language detection)."""
    lines = [
        f"{title} ({domain.rows} rows)",
        f"  {'':<10} {'plain VADER':^26}   {'incidentflow':^26}",
        f"  {'class':<10} {'prec':>8}{'recall':>9}{'F1':>9}   {'prec':>8}{'recall':>9}{'F1':>9}"
        f"  {'support':>8}",
    ]
    for label in LABELS:
        p, d = plain.per_class[label], domain.per_class[label]
        lines.append(
            f"  {label:<10} {p.precision:>8.3f}{p.recall:>9.3f}{p.f1:>9.3f}"
            f"   {d.precision:>8.3f}{d.recall:>9.3f}{d.f1:>9.3f}  {d.support:>8}"
        )
    lines.append(f"  {'accuracy':<10} {plain.accuracy:>26.3f}   {domain.accuracy:>26.3f}")
    lines.append(f"  {'macro F1':<10} {plain.macro_f1:>26.3f}   {domain.macro_f1:>26.3f}")
    lines.append(f"  {'unknown':<10} {plain.unknown:>26}   {domain.unknown:>26}")
    return lines


@dataclass(frozen=True)
class LanguageReport:
    """How sentiment did on one language's messages."""

    language: str
    rows: int
    accuracy: float  # "unknown" counts as wrong here
    unknown: int
    negative_scored_positive: int
    language_detected: float  # share of rows whose language was detected right

    def line(self) -> str:
        return (
            f"language={self.language} n={self.rows} sentiment_accuracy={self.accuracy:.3f} "
            f"unknown={self.unknown} negative_scored_positive={self.negative_scored_positive} "
            f"language_detected={self.language_detected:.3f}"
        )


def by_language(
    scorer: SentimentScorer, messages: Sequence[LabeledMessage]
) -> list[LanguageReport]:
    scores = scorer.score_many([m.text for m in messages])
    reports = []
    for language in sorted({m.language for m in messages}):
        pairs = [(m, s) for m, s in zip(messages, scores, strict=True) if m.language == language]
        reports.append(
            LanguageReport(
                language=language,
                rows=len(pairs),
                accuracy=sum(m.sentiment == s.sentiment for m, s in pairs) / len(pairs),
                unknown=sum(s.sentiment == "unknown" for _, s in pairs),
                negative_scored_positive=sum(
                    m.sentiment == "negative" and s.sentiment == "positive" for m, s in pairs
                ),
                language_detected=sum(m.language == s.language for m, s in pairs) / len(pairs),
            )
        )
    return reports
