"""Sentiment read from a message's meaning rather than its English words.

A logistic regression over multilingual sentence embeddings (``incidentflow.embeddings``),
trained on the labeled set's tuning part in every language it holds. It scores the messages
VADER's English lexicon cannot read, and gives a second opinion on the English messages VADER
finds positive, where sarcasm hides ("Great, charged AGAIN. Fantastic job guys.").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

from contracts.events import Sentiment
from incidentflow.embeddings import SentenceEncoder, shared_encoder
from incidentflow.trained import keep_if_possible

MODEL_FILE = "sentiment.joblib"
META_FILE = "sentiment.json"


@dataclass(frozen=True)
class Reading:
    """The head's probabilities for one message."""

    negative: float
    neutral: float
    positive: float

    @property
    def polarity(self) -> float:
        """From -1 (surely negative) to 1 (surely positive), as VADER's compound is."""
        return round(self.positive - self.negative, 4)

    def label(self, min_confidence: float, min_positive: float) -> Sentiment:
        """The likeliest mood when the head is sure enough of it, else unknown. Positive needs
        more (``min_positive``): an unhappy customer read as happy is the costly mistake (a
        later follow-up, a lower ticket priority)."""
        best, value = max(
            (("negative", self.negative), ("neutral", self.neutral), ("positive", self.positive)),
            key=lambda item: item[1],
        )
        needed = min_positive if best == "positive" else min_confidence
        return best if value >= needed else "unknown"  # type: ignore[return-value]


class MeaningSentiment:
    def __init__(self, head: LogisticRegression, encoder: SentenceEncoder | None = None) -> None:
        if list(head.classes_) != ["negative", "neutral", "positive"]:
            raise ValueError(f"sentiment head trained on {list(head.classes_)}")
        self.head = head
        # Loaded now, not at the first message that needs it: that one would wait a second.
        self.encoder = encoder or shared_encoder()

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[Sentiment]) -> MeaningSentiment:
        encoder = shared_encoder()
        head = LogisticRegression(C=4.0, max_iter=3000).fit(encoder.encode(texts), labels)
        return cls(head, encoder)

    @classmethod
    def load(cls, model_dir: Path) -> MeaningSentiment:
        return cls(joblib.load(model_dir / MODEL_FILE))

    def save(self, model_dir: Path, trained_on: int) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.head, model_dir / MODEL_FILE)
        meta = {
            "trained_at": datetime.now(UTC).isoformat(),
            "examples": trained_on,
            "encoder": self.encoder.name,
        }
        (model_dir / META_FILE).write_text(json.dumps(meta, indent=2))

    def read(self, texts: Sequence[str]) -> list[Reading]:
        """One embedding call for the whole batch."""
        if not texts:
            return []
        probabilities: np.ndarray = self.head.predict_proba(self.encoder.encode(texts))
        return [Reading(*(float(p) for p in row)) for row in probabilities]


def train_on_tuning_part(labeled: Path) -> tuple[MeaningSentiment, int]:
    """A reader trained on ``labeled``'s tuning part (never its held-out part), and how many
    examples that was."""
    from services.sentiment.evaluate import read_labeled, split

    tuning, _ = split(read_labeled(labeled))
    reader = MeaningSentiment.train([m.text for m in tuning], [m.sentiment for m in tuning])
    return reader, len(tuning)


def default_meaning(model_dir: Path, labeled: Path) -> MeaningSentiment:
    """The reader in ``model_dir`` if there is one, else one trained now on ``labeled``'s
    tuning part and kept there for the next start."""
    if (model_dir / MODEL_FILE).exists():
        return MeaningSentiment.load(model_dir)
    reader, examples = train_on_tuning_part(labeled)
    keep_if_possible(lambda: reader.save(model_dir, trained_on=examples), model_dir)
    return reader
