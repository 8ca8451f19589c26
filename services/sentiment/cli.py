"""The sentiment step's commands: `incidentflow sentiment` and `sentiment-eval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def sentiment() -> None:
    """Score messages from stdin, one per line; print one JSON line per message."""
    from services.sentiment.assemble import build_scorer
    from services.sentiment.settings import SentimentSettings

    scorer = build_scorer(SentimentSettings())
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        score = scorer.score(text)
        record = {
            "text": text,
            "sentiment": score.sentiment,
            "polarity": score.polarity,
            "language": score.language,
        }
        typer.echo(json.dumps(record, ensure_ascii=False))


def sentiment_eval(
    csv_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="CSV",
            help="columns text,sentiment (default: data/sentiment/labeled.csv)",
            show_default=False,
        ),
    ] = None,
    held_out_only: Annotated[
        bool, typer.Option("--held-out", help="only the held-out 30 % (the last line too)")
    ] = False,
) -> None:
    """Plain VADER vs the service's scorer: per-class precision/recall/F1, held-out and all.

    The last line is the service scorer's ``accuracy=... macro_f1=...`` on all rows (on the
    English held-out rows with ``--held-out``; the other languages' rows come just before).
    """
    from services.sentiment.assemble import build_scorer
    from services.sentiment.evaluate import (
        HELD_OUT_PERCENT,
        SHIPPED_LABELED,
        evaluate,
        read_labeled,
        side_by_side,
        split,
    )
    from services.sentiment.score import SentimentScorer
    from services.sentiment.settings import SentimentSettings

    settings = SentimentSettings()
    domain = build_scorer(settings)
    plain = SentimentScorer(settings.thresholds, domain=False)
    messages = read_labeled(csv_path or SHIPPED_LABELED)
    if not messages:
        typer.echo("no labeled rows", err=True)
        raise typer.Exit(1)
    _, held_out = split(messages)
    english = [m for m in held_out if m.language == "en"]
    others = [m for m in held_out if m.language != "en"]
    parts = [
        (f"held-out {HELD_OUT_PERCENT}% (by sha256 of the text), other languages", others),
        (f"held-out {HELD_OUT_PERCENT}% (by sha256 of the text), English", english),
    ]
    if not held_out_only:
        parts.append(("all rows", messages))
    result = None
    for title, part in parts:
        if not part:
            continue
        result = evaluate(domain, part)
        for row in side_by_side(title, evaluate(plain, part), result):
            typer.echo(row)
        typer.echo("")
    if result is None:
        typer.echo("no held-out rows", err=True)
        raise typer.Exit(1)
    typer.echo(f"accuracy={result.accuracy:.3f} macro_f1={result.macro_f1:.3f}")


def provision_lexicon() -> str:
    """The VADER lexicon, from the package into SENTIMENT_NLTK_DATA (`incidentflow provision`)."""
    from services.sentiment.lexicon import ensure_vader_lexicon
    from services.sentiment.settings import SentimentSettings

    return f"vader lexicon: {ensure_vader_lexicon(SentimentSettings().nltk_data)}"


def provision_reader() -> str:
    """The sentiment reader, trained into SENTIMENT_MODEL_DIR (`incidentflow provision`)."""
    from services.sentiment.evaluate import SHIPPED_LABELED
    from services.sentiment.meaning import train_on_tuning_part
    from services.sentiment.settings import SentimentSettings

    model_dir = SentimentSettings().model_dir
    reader, examples = train_on_tuning_part(SHIPPED_LABELED)
    reader.save(model_dir, trained_on=examples)
    return f"sentiment reader: {model_dir} ({examples} examples)"


def register(app: typer.Typer) -> None:
    app.command()(sentiment)
    app.command("sentiment-eval")(sentiment_eval)
