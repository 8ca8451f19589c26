"""The ``incidentflow`` operator command line."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from contracts.events import CATEGORIES, Category
from incidentflow.dlq_cli import dlq_app
from incidentflow.settings import CommonSettings
from services.ingest.keys import api_key_app

if TYPE_CHECKING:
    import asyncpg

    from services.classifier.adapters.local import Example, LocalClassifier
    from services.reminder.store import Reminder

T = TypeVar("T")

app = typer.Typer(help="Operate incidentflow: database, broker topology, local stack, incidents.")


def _settings() -> CommonSettings:
    return CommonSettings()


@app.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations."""
    from incidentflow.db import current_revision
    from incidentflow.db import migrate as run_migrations

    url = _settings().database_url
    asyncio.run(run_migrations(url))
    typer.echo(f"database at revision {asyncio.run(current_revision(url))}")


@app.command()
def topology() -> None:
    """Declare the RabbitMQ topology (exchanges, queues, DLQs, delay levels) and print it."""
    from contracts.topology import DEAD_LETTERS, EVENTS, WORK_ROUTES, DelayLevels
    from incidentflow.messaging import declare_all

    asyncio.run(declare_all(_settings().rabbitmq_url))
    typer.echo(f"exchange {EVENTS.name} (topic)")
    for route in WORK_ROUTES:
        typer.echo(
            f"  {route.binding_key:<28} -> {route.queue_name:<32} "
            f"(quorum, DLQ {route.dead_letter_queue.name})"
        )
    typer.echo(f"exchange {DEAD_LETTERS.name} (direct): one DLQ per work queue")
    typer.echo(
        f"delay levels {DelayLevels.PREFIX}.0..{DelayLevels.LEVELS - 1} "
        f"(quorum, TTL 2^N s) -> {DelayLevels.DELIVERY.name}"
    )
    # Retries come back through the delay levels to the failing queue alone.
    typer.echo(f"exchange {DelayLevels.DELIVERY.name} (topic): retries")
    for route in WORK_ROUTES:
        typer.echo(f"  {route.retry_binding_key:<44} -> {route.queue_name}")


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option(help="write the document here (default: standard output)")
    ] = None,
) -> None:
    """Write the whole system's AsyncAPI 3.0 document: every channel in and out."""
    from incidentflow.asyncapi import system_document

    text = json.dumps(system_document(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"AsyncAPI document written to {output}")


@app.command("provision-roles")
def provision_roles(
    credentials: Annotated[
        Path, typer.Option(help="one folder per service: database_url and rabbitmq_url files")
    ] = Path("var/credentials"),
    prefix: Annotated[str, typer.Option(help="role and user names: <prefix>_<service>")] = (
        "incidentflow"
    ),
) -> None:
    """Create or update each service's Postgres role and RabbitMQ user with only its grants.

    Run as the schema owner and the broker's administrator (DATABASE_URL, RABBITMQ_URL,
    RABBITMQ_MANAGEMENT_URL), after ``migrate``. Start each service with
    ``SECRETS_DIR=<credentials>/<service>``."""
    from incidentflow.provisioning import (
        DeadLetterLimits,
        ProvisionSettings,
        management_url,
        provision_broker,
        provision_database,
    )

    settings = ProvisionSettings()
    roles = asyncio.run(provision_database(settings.database_url, credentials, prefix))
    users = provision_broker(
        settings.rabbitmq_url,
        management_url(settings.rabbitmq_url, settings.rabbitmq_management_url),
        credentials,
        prefix,
        DeadLetterLimits(settings.dead_letter_ttl_days, settings.dead_letter_max_length),
    )
    for service in roles:
        typer.echo(f"{service:<11} credentials in {credentials / service}")
    typer.echo(
        f"dead letters kept {settings.dead_letter_ttl_days} days at most, "
        f"{settings.dead_letter_max_length} per queue"
    )
    typer.echo(f"roles={len(roles)} users={len(users)}")


@app.command()
def provision() -> None:
    """Provision offline data: the VADER lexicon, the local classifier, the sentiment reader."""
    from services.classifier.adapters.local import (
        SHIPPED_DATA,
        LocalClassifier,
        read_examples,
        split,
    )
    from services.classifier.settings import ClassifierSettings
    from services.sentiment.evaluate import SHIPPED_LABELED
    from services.sentiment.lexicon import ensure_vader_lexicon
    from services.sentiment.meaning import train_on_tuning_part
    from services.sentiment.settings import SentimentSettings

    sentiment_settings = SentimentSettings()
    typer.echo(f"vader lexicon: {ensure_vader_lexicon(sentiment_settings.nltk_data)}")
    model_dir = ClassifierSettings().model_dir
    if model_dir is not None:
        train, _ = split(read_examples(SHIPPED_DATA))
        LocalClassifier.train(train).save(model_dir, trained_on=len(train))
        typer.echo(f"classifier model: {model_dir} ({len(train)} training examples)")
    reader, examples = train_on_tuning_part(SHIPPED_LABELED)
    reader.save(sentiment_settings.model_dir, trained_on=examples)
    typer.echo(f"sentiment reader: {sentiment_settings.model_dir} ({examples} examples)")


@app.command()
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


@app.command("sentiment-eval")
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


@app.command()
def mailbox(
    directory: Annotated[Path, typer.Option("--dir")] = Path("var/mail"),
    host: str = "127.0.0.1",
    port: int = 1025,
) -> None:
    """Run the dev mail inbox: an SMTP server keeping each message as a .eml file."""
    try:
        from incidentflow.mailbox import serve_forever
    except ImportError as exc:  # the production image has no SMTP server in it
        raise typer.BadParameter(
            "the dev inbox needs the dev extras: pip install -e '.[dev]'"
        ) from exc

    typer.echo(f"dev inbox: smtp://{host}:{port} -> {directory}/*.eml")
    asyncio.run(serve_forever(directory, host, port))


@app.command()
def up(
    base_port: int = 8000,
    mail: Annotated[
        bool, typer.Option(help="start the dev inbox (when no SMTP_HOST is set)")
    ] = True,
    credentials: Annotated[
        Path | None,
        typer.Option(help="each service logs in with <dir>/<service>/ (provision-roles)"),
    ] = None,
) -> None:
    """Start the six services (and the dev inbox) in the background."""
    from incidentflow.stack import Stack

    stack = Stack(base_port=base_port)
    if credentials is not None:
        stack.use_credentials(credentials)
    stack.start(with_mailbox=mail)
    stack.wait_ready()
    typer.echo(f"incidentflow is up: ingest at {stack.url('ingest')} (OpenAPI at /docs)")


@app.command()
def down() -> None:
    """Stop what ``up`` started."""
    from incidentflow.stack import Stack

    Stack().stop()
    typer.echo("incidentflow is down")


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


@app.command()
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
    from incidentflow.db import create_pool
    from services.ingest.store import corrections_for_training

    pool = await create_pool(_settings().database_url, 1)
    try:
        async with pool.acquire() as conn:
            rows = await corrections_for_training(conn)
    finally:
        await pool.close()
    return [(text, category) for text, category in rows if category in CATEGORIES]


@app.command("eval")
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


@app.command()
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


@app.command()
def erase(
    customer: Annotated[
        str | None, typer.Option("--customer", help="the customer id to erase")
    ] = None,
    expired: Annotated[
        bool,
        typer.Option("--expired", help="every incident resolved more than RETENTION_DAYS days ago"),
    ] = False,
    operator: Annotated[
        str | None,
        typer.Option(help="who carries it out, recorded with the erasure (default: the OS user)"),
    ] = None,
) -> None:
    """Erase a customer's (or expired incidents') email, phone and messages everywhere the
    database keeps them, and a customer's in the dead-letter queues (expired ones have
    expired there: DEAD_LETTER_TTL_DAYS)."""
    from incidentflow.erasure import erase_customer, erase_expired

    if (customer is None) == (not expired):
        raise typer.BadParameter("give --customer ID or --expired, one of them")
    who = operator or _os_user()
    if customer is not None:
        incident_ids = asyncio.run(_with_conn(lambda conn: erase_customer(conn, customer, who)))
        masked = asyncio.run(_erase_dead_letters(customer, [str(i) for i in incident_ids]))
        typer.echo(f"masked {masked} dead letters")
        erased = len(incident_ids)
    else:
        days = _settings().retention_days
        # A transaction per batch: a large backlog does not hold its locks to the end.
        erased = asyncio.run(
            _with_conn(lambda conn: erase_expired(conn, days, who), one_transaction=False)
        )
    typer.echo(f"erased the personal data of {erased} incidents")


async def _erase_dead_letters(customer: str, incident_ids: list[str]) -> int:
    import aio_pika

    from incidentflow import dlq

    connection = await aio_pika.connect(_settings().rabbitmq_url)
    async with connection:
        return await dlq.erase(connection, customer, incident_ids)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "unknown"


reminders_app = typer.Typer(help="Follow-up reminders: list, show, cancel, fire now.")
app.add_typer(reminders_app, name="reminders")


async def _with_conn(
    work: Callable[[asyncpg.Connection], Awaitable[T]], *, one_transaction: bool = True
) -> T:
    """``work`` on a connection, in one transaction unless it makes its own."""
    from incidentflow.db import create_pool

    pool = await create_pool(_settings().database_url, 1)
    try:
        async with pool.acquire() as conn:
            if not one_transaction:
                return await work(conn)
            async with conn.transaction():
                return await work(conn)
    finally:
        await pool.close()


def _print_reminders(reminders: list[Reminder]) -> None:
    typer.echo(f"{'id':>8}  {'incident':36}  {'kind':10}  {'due_at':32}  {'state':9}  attempts")
    for r in reminders:
        typer.echo(
            f"{r.id:>8}  {r.incident_id!s:36}  {r.kind:10}  {r.due_at.isoformat():32}  "
            f"{r.state:9}  {r.attempts}"
        )


@reminders_app.command("list")
def reminders_list(
    state: Annotated[str | None, typer.Option(help="scheduled, requested, sent, ...")] = None,
    limit: int = 50,
) -> None:
    """Reminders by due time, optionally of one state."""
    from services.reminder import store

    _print_reminders(asyncio.run(_with_conn(lambda conn: store.listing(conn, state, limit))))


@reminders_app.command("show")
def reminders_show(incident_id: uuid.UUID) -> None:
    """The reminders of one incident."""
    from services.reminder import store

    reminders = asyncio.run(_with_conn(lambda conn: store.of_incident(conn, incident_id)))
    if not reminders:
        typer.echo(f"no reminders for incident {incident_id}", err=True)
        raise typer.Exit(1)
    _print_reminders(reminders)


@reminders_app.command("cancel")
def reminders_cancel(incident_id: uuid.UUID) -> None:
    """Cancel an incident's pending reminders (audited)."""
    from services.reminder import store

    async def work(conn: asyncpg.Connection) -> list[Reminder]:
        cancelled = await store.cancel(conn, incident_id)
        await store.record_operator_action(conn, incident_id, "cancelled", cancelled)
        return cancelled

    typer.echo(f"cancelled {len(asyncio.run(_with_conn(work)))} reminder(s)")


@reminders_app.command("fire-now")
def reminders_fire_now(incident_id: uuid.UUID) -> None:
    """Make an incident's pending reminders due now and hand them to the reminder service."""
    from contracts.events import ReminderDue
    from incidentflow.messaging import make_broker, publish_delayed
    from services.reminder import store

    async def work(conn: asyncpg.Connection) -> list[Reminder]:
        due = await store.due_now(conn, incident_id)
        await store.record_operator_action(conn, incident_id, "fired-now", due)
        return due

    async def fire() -> int:
        due = await _with_conn(work)
        broker = make_broker(_settings().rabbitmq_url, prefetch=1)
        await broker.connect()
        try:
            for reminder in due:
                event = ReminderDue(
                    incident_id=reminder.incident_id,
                    reminder_id=reminder.id,
                    kind=reminder.kind,
                    due_at=reminder.due_at,
                )
                await publish_delayed(broker, event, 0)
        finally:
            await broker.stop()
        return len(due)

    typer.echo(f"fired {asyncio.run(fire())} reminder(s)")


incident_app = typer.Typer(help="Look at incidents.")
app.add_typer(incident_app, name="incident")
app.add_typer(dlq_app, name="dlq")
app.add_typer(api_key_app, name="api-key")


@incident_app.command("show")
def incident_show(incident_id: uuid.UUID) -> None:
    """Print an incident's whole state: steps, notifications, reminder, audit trail."""
    from incidentflow.db import create_pool
    from services.ingest.store import incident_details

    async def fetch() -> dict[str, object] | None:
        pool = await create_pool(_settings().database_url, 1)
        try:
            async with pool.acquire() as conn:
                return await incident_details(conn, incident_id)
        finally:
            await pool.close()

    details = asyncio.run(fetch())
    if details is None:
        typer.echo(f"incident {incident_id} not found", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(details, indent=2, default=str))


if __name__ == "__main__":
    app()
