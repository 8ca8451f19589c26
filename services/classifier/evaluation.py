"""Measuring a classifier on labeled examples: per-class scores, confusion, calibration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from contracts.events import CATEGORIES
from services.classifier.adapters.local import Example, LocalClassifier

CONFIDENT = 0.9


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    macro_f1: float
    report: str
    confusion: str
    confident_count: int
    confident_accuracy: float
    # The categories the file holds, when it lacks some: macro-F1 is over these alone.
    present: tuple[str, ...]
    by_language: dict[str, tuple[int, float]]  # language: (rows, accuracy)

    def lines(self) -> list[str]:
        share = f"{self.confident_accuracy:.3f}" if self.confident_count else "n/a"
        lines = [
            self.report,
            "confusion matrix (rows: true, columns: predicted)",
            self.confusion,
            f"confidence>={CONFIDENT}: n={self.confident_count} accuracy={share}",
        ]
        lines += [
            f"language={language} n={rows} accuracy={accuracy:.3f}"
            for language, (rows, accuracy) in sorted(self.by_language.items())
        ]
        if len(self.present) < len(CATEGORIES):
            absent = [c for c in CATEGORIES if c not in self.present]
            lines.append(
                f"macro-F1 over the {len(self.present)} categories present in the file; "
                f"absent: {', '.join(absent)}"
            )
        lines.append(f"accuracy={self.accuracy:.3f} macro_f1={self.macro_f1:.3f}")
        return lines


def evaluate(model: LocalClassifier, examples: Sequence[Example]) -> Evaluation:
    if not examples:
        raise ValueError("no examples to evaluate on")
    truth = [e.category for e in examples]
    results = model.predict_many([e.text for e in examples])
    predicted = [r.category for r in results]
    # A category the file does not hold has no recall to measure; averaging its F1 of 0 (or
    # leaving out what was wrongly predicted into it) would say nothing about the model.
    present = tuple(c for c in CATEGORIES if c in set(truth))
    labels = [c for c in CATEGORIES if c in set(truth) | set(predicted)]
    matrix = confusion_matrix(truth, predicted, labels=labels)
    short = [label[:10] for label in labels]
    confusion = "\n".join(
        [" " * 18 + " ".join(f"{s:>10}" for s in short)]
        + [
            f"{label:>17} " + " ".join(f"{n:>10}" for n in row)
            for label, row in zip(labels, matrix, strict=True)
        ]
    )
    confident = [
        r.category == t for r, t in zip(results, truth, strict=True) if r.confidence >= CONFIDENT
    ]
    by_language: dict[str, list[bool]] = {}
    for example, guess in zip(examples, predicted, strict=True):
        if example.language:
            by_language.setdefault(example.language, []).append(guess == example.category)
    return Evaluation(
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(
            f1_score(truth, predicted, labels=list(present), average="macro", zero_division=0)
        ),
        report=str(
            classification_report(truth, predicted, labels=list(present), digits=3, zero_division=0)
        ),
        confusion=confusion,
        confident_count=len(confident),
        confident_accuracy=sum(confident) / len(confident) if confident else 0.0,
        present=present,
        by_language=(
            {lang: (len(hits), sum(hits) / len(hits)) for lang, hits in by_language.items()}
            if len(by_language) > 1
            else {}
        ),
    )
