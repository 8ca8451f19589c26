"""The embedded local classifier: TF-IDF features and logistic regression (scikit-learn).

No network. Trained from a CSV with columns ``text,category``; built by ``incidentflow train``
or, when no model directory exists, trained in memory at start from the shipped data set.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from contracts.events import CATEGORIES, Category
from services.classifier.classify import Classification

REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED_DATA = REPO_ROOT / "data" / "classifier" / "incidents.csv"
MODEL_FILE = "model.joblib"
META_FILE = "model.json"


@dataclass(frozen=True)
class Example:
    text: str
    category: Category


def read_examples(path: Path) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    examples = []
    for line, row in enumerate(rows, start=2):
        category = (row.get("category") or "").strip()
        if category not in CATEGORIES:
            raise ValueError(f"{path}:{line}: unknown category {category!r}")
        examples.append(Example(text=row["text"], category=cast(Category, category)))
    return examples


def is_held_out(text: str) -> bool:
    """A fixed 20 % of the shipped set, chosen by content hash, that training never sees."""
    return hashlib.sha256(text.strip().lower().encode()).digest()[0] % 5 == 0


def split(examples: Iterable[Example]) -> tuple[list[Example], list[Example]]:
    train: list[Example] = []
    held_out: list[Example] = []
    for example in examples:
        (held_out if is_held_out(example.text) else train).append(example)
    return train, held_out


def _pipeline() -> Pipeline:
    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            # Character n-grams make the model robust to typos ("chargd twice", "acct").
            (
                "chars",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
            ),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(C=10.0, max_iter=2000))])


class LinearScorer:
    """The fitted pipeline's arithmetic, without scikit-learn's per-call input validation.

    For one message, sklearn spends ~2.5 ms checking inputs and ~0.1 ms computing; this does
    the same computation (TF-IDF per vectorizer, l2-normalised, times the coefficients, softmax)
    directly. ``tests/services/classifier`` proves it equals ``pipeline.predict_proba``.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        features = cast(FeatureUnion, pipeline.named_steps["features"])
        model = cast(LogisticRegression, pipeline.named_steps["model"])
        self.classes = model.classes_
        self._weights = np.ascontiguousarray(model.coef_.T)  # features x classes
        self._intercept = model.intercept_
        self._parts = []
        offset = 0
        for _, vectorizer in features.transformer_list:
            vectorizer = cast(TfidfVectorizer, vectorizer)
            self._parts.append(
                (
                    vectorizer.build_analyzer(),
                    vectorizer.vocabulary_,
                    vectorizer.idf_,
                    offset,
                    vectorizer.sublinear_tf,
                )
            )
            offset += len(vectorizer.idf_)
        words = cast(TfidfVectorizer, features.transformer_list[0][1])
        self._words = words.get_feature_names_out()

    def score(self, text: str) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """Class probabilities, and the (word feature, tf-idf value) pairs of the message."""
        logits = self._intercept.astype(float)
        word_values: list[tuple[int, float]] = []
        for part, (analyzer, vocabulary, idf, offset, sublinear) in enumerate(self._parts):
            counts = Counter(
                index for token in analyzer(text) if (index := vocabulary.get(token)) is not None
            )
            if not counts:
                continue
            indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            values = np.fromiter(counts.values(), dtype=float, count=len(counts))
            if sublinear:
                values = 1.0 + np.log(values)
            values *= idf[indices]
            values /= np.linalg.norm(values)
            logits = logits + values @ self._weights[offset + indices]
            if part == 0:
                word_values = list(zip(indices.tolist(), values.tolist(), strict=True))
        exp = np.exp(logits - logits.max())
        return exp / exp.sum(), word_values

    def reason(self, word_values: list[tuple[int, float]], best: int, top: int = 3) -> str:
        """The words that pushed hardest towards the chosen category."""
        pushes = sorted(
            (
                (value * float(self._weights[index, best]), str(self._words[index]))
                for index, value in word_values
            ),
            reverse=True,
        )
        drivers = [word for push, word in pushes[:top] if push > 0]
        return ", ".join(drivers) if drivers else "no strong cue"


class LocalClassifier:
    """A fitted pipeline plus what is needed to explain its decisions."""

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self.pipeline = pipeline
        self.name = name
        self._scorer = LinearScorer(pipeline)

    @classmethod
    def train(cls, examples: Sequence[Example], name: str = "local") -> LocalClassifier:
        pipeline = _pipeline()
        pipeline.fit([e.text for e in examples], [e.category for e in examples])
        return cls(pipeline, name)

    @classmethod
    def load(cls, model_dir: Path) -> LocalClassifier:
        meta = json.loads((model_dir / META_FILE).read_text())
        pipeline = joblib.load(model_dir / MODEL_FILE)
        return cls(pipeline, meta["name"])

    @classmethod
    def default(cls, model_dir: Path | None, training_data: Path = SHIPPED_DATA) -> LocalClassifier:
        """The model in ``model_dir`` if there is one, else one trained now on ``training_data``."""
        if model_dir is not None and (model_dir / MODEL_FILE).exists():
            return cls.load(model_dir)
        train, _ = split(read_examples(training_data))
        return cls.train(train)

    def save(self, model_dir: Path, trained_on: int) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.pipeline, model_dir / MODEL_FILE)
        meta = {
            "name": self.name,
            "trained_at": datetime.now(UTC).isoformat(),
            "examples": trained_on,
        }
        (model_dir / META_FILE).write_text(json.dumps(meta, indent=2))

    def predict(self, text: str) -> Classification:
        probabilities, words = self._scorer.score(text)
        best = int(np.argmax(probabilities))
        return Classification(
            category=cast(Category, str(self._scorer.classes[best])),
            confidence=round(float(probabilities[best]), 4),
            reason=self._scorer.reason(words, best),
            model=self.name,
        )

    def predict_many(self, texts: Sequence[str]) -> list[Classification]:
        return [self.predict(text) for text in texts]

    async def classify(self, text: str) -> Classification:
        return self.predict(text)
