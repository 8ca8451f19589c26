"""Quality on text the project did not write, and per language: ``make eval-foreign``.

1. The CLINC150 banking queries (``../shared/data/clinc150-banking-test.csv`` beside the
   repository, or ``--foreign``): many authors; evaluation only, never training.
2. The project's own held-out rows of ``data/classifier/incidents.csv``.
3. ``data/classifier/multilingual-heldout.csv``: rows in es, de, fr, pt and it written for
   evaluation and never trained on: category accuracy, sentiment and language detection per
   language.

The models are the services' own (``incidentflow provision`` builds them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.classifier.adapters.local import (  # noqa: E402
    SHIPPED_DATA,
    LocalClassifier,
    read_examples,
    split,
)
from services.classifier.evaluation import evaluate  # noqa: E402
from services.classifier.settings import ClassifierSettings  # noqa: E402
from services.sentiment.assemble import build_scorer  # noqa: E402
from services.sentiment.evaluate import by_language, read_labeled  # noqa: E402
from services.sentiment.settings import SentimentSettings  # noqa: E402

CLINC = REPO.parent / "shared" / "data" / "clinc150-banking-test.csv"
MULTILINGUAL = REPO / "data" / "classifier" / "multilingual-heldout.csv"


def section(title: str) -> None:
    print(f"\n== {title}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--foreign", type=Path, default=CLINC)
    args = parser.parse_args()

    settings = ClassifierSettings()
    model = LocalClassifier.default(settings.model_dir, settings.training_data)
    summary = []
    if args.foreign.exists():
        section(f"{args.foreign.name} (evaluation only; never trained on)")
        result = evaluate(model, read_examples(args.foreign))
        print("\n".join(result.lines()))
        summary.append(f"foreign_macro_f1={result.macro_f1:.3f}")
    else:
        print(f"{args.foreign}: not found, skipped (it lives in shared/data beside the repo)")

    section("own held-out rows of data/classifier/incidents.csv")
    _, held_out = split(read_examples(SHIPPED_DATA))
    result = evaluate(model, held_out)
    print("\n".join(result.lines()))
    summary.append(f"held_out_macro_f1={result.macro_f1:.3f}")

    section("multilingual held-out rows: category")
    examples = read_examples(MULTILINGUAL)
    result = evaluate(model, examples)
    print("\n".join(result.lines()))
    summary.append(
        f"multilingual_min_accuracy={min(a for _, a in result.by_language.values()):.3f}"
    )

    section("multilingual held-out rows: sentiment and language")
    reports = by_language(build_scorer(SentimentSettings()), read_labeled(MULTILINGUAL))
    for report in reports:
        print(report.line())
    rows = sum(r.rows for r in reports)
    detected = sum(r.language_detected * r.rows for r in reports) / rows
    wrong_polarity = sum(r.negative_scored_positive for r in reports)
    summary.append(f"language_detected={detected:.3f} negative_scored_positive={wrong_polarity}")
    print("\n" + " ".join(summary))


if __name__ == "__main__":
    main()
