"""The classifier's commands: `incidentflow train`, `eval` and `classify`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contracts.events import CATEGORIES, Category
from incidentflow.settings import CommonSettings

if TYPE_CHECKING:
    from services.classifier.adapters.local import Example, LocalClassifier


def _examples(path: Path) -> list[Example]:
    from services.classifier.adapters.local import read_examples

    try:
        return read_examples(path)
    except (OSError, ValueError, KeyError) as exc:
        raise typer.BadParameter(f"{path}: {exc}") from exc


def _classifier_model(model_dir: Path | None) -> LocalClassifier:
    from services.classifier.adapters.local import LocalClassifier
    from services.classifier.settings import ClassifierSettings

    if model_dir is not None:
        return LocalClassifier.load(model_dir)
    settings = ClassifierSettings()
    return LocalClassifier.default(settings.model_dir, settings.training_data)


def train(
    labeled: Annotated[
        Path | None, typer.Argument(help="CSV with columns text,category; default: shipped set")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="model directory to write")] = None,
    from_db: Annotated[
        bool, typer.Option("--from-db", help="add agents' corrections from the database")
    ] = False,
) -> None:
    """Train the local classifier and save it (default: CLASSIFIER_MODEL_DIR)."""
    from services.classifier.adapters.local import (
        SHIPPED_DATA,
        Example,
        LocalClassifier,
        read_examples,
        split,
    )
    from services.classifier.settings import ClassifierSettings

    if labeled is None:
        examples, _ = split(read_examples(SHIPPED_DATA))  # the held-out part stays unseen
    else:
        examples = _examples(labeled)
    if from_db:
        corrections = asyncio.run(_corrections())
        examples = [*examples, *(Example(text, category) for text, category in corrections)]
        typer.echo(f"{len(corrections)} corrections from the database")
    target = out or ClassifierSettings().model_dir
    if target is None:
        raise typer.BadParameter("no --out and no CLASSIFIER_MODEL_DIR")
    LocalClassifier.train(examples).save(target, trained_on=len(examples))
    typer.echo(f"trained on {len(examples)} examples -> {target}")


async def _corrections() -> list[tuple[str, Category]]:
    """Agents' corrections (the ingest API's), read through ingest's store."""
    from incidentflow.db import with_connection
    from services.ingest.store import corrections_for_training

    rows = await with_connection(CommonSettings().database_url, corrections_for_training)
    return [(text, category) for text, category in rows if category in CATEGORIES]


def evaluate_model(
    labeled: Annotated[Path, typer.Argument(help="CSV with columns text,category")],
    model: Annotated[
        Path | None, typer.Option(help="model directory (default: the service's)")
    ] = None,
    held_out: Annotated[
        bool, typer.Option("--held-out", help="only the rows of the fixed held-out split")
    ] = False,
) -> None:
    """Per-class precision, recall and F1, a confusion matrix, and accuracy / macro-F1."""
    from services.classifier.adapters.local import split
    from services.classifier.evaluation import evaluate

    examples = _examples(labeled)
    if held_out:
        _, examples = split(examples)
    for line in evaluate(_classifier_model(model), examples).lines():
        typer.echo(line)


def classify(
    model: Annotated[
        Path | None, typer.Option(help="model directory (default: the service's)")
    ] = None,
) -> None:
    """Classify one message per stdin line; one JSON line out per message."""
    classifier = _classifier_model(model)
    for line in sys.stdin:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        result = classifier.predict(text)
        typer.echo(json.dumps({"text": text, **dataclasses.asdict(result)}))


def provision_model() -> str | None:
    """Train the shipped model into CLASSIFIER_MODEL_DIR (`incidentflow provision`)."""
    from services.classifier.adapters.local import (
        SHIPPED_DATA,
        LocalClassifier,
        read_examples,
        split,
    )
    from services.classifier.settings import ClassifierSettings

    model_dir = ClassifierSettings().model_dir
    if model_dir is None:
        return None
    train_part, _ = split(read_examples(SHIPPED_DATA))
    LocalClassifier.train(train_part).save(model_dir, trained_on=len(train_part))
    return f"classifier model: {model_dir} ({len(train_part)} training examples)"


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command("eval")(evaluate_model)
    app.command()(classify)
