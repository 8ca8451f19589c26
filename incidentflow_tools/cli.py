"""The ``incidentflow`` command line: the runtime's commands here, each service's own from
its ``cli`` module (services/*/cli.py)."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from incidentflow.settings import CommonSettings
from incidentflow_tools.dlq_cli import dlq_app
from services.classifier import cli as classifier_cli
from services.ingest import cli as ingest_cli
from services.reminder import cli as reminder_cli
from services.sentiment import cli as sentiment_cli

if TYPE_CHECKING:
    pass


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
    prefix: Annotated[
        str,
        typer.Option(
            help="role and user names: <prefix>_<service>", envvar="PROVISION_ROLE_PREFIX"
        ),
    ] = "incidentflow",
) -> None:
    """Create or update each service's Postgres role and RabbitMQ user with only its grants,
    and declare the broker topology they may not declare themselves.

    Run as the schema owner and the broker's administrator (DATABASE_URL, RABBITMQ_URL,
    RABBITMQ_MANAGEMENT_URL), after ``migrate``. Start each service with
    ``SECRETS_DIR=<credentials>/<service>``, ``MIGRATE_ON_START=false`` and
    ``DECLARE_TOPOLOGY=false``."""
    from incidentflow.provisioning import (
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
        settings.dead_letter_limits,
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
    typer.echo(sentiment_cli.provision_lexicon())
    if (trained := classifier_cli.provision_model()) is not None:
        typer.echo(trained)
    typer.echo(sentiment_cli.provision_reader())


@app.command()
def mailbox(
    directory: Annotated[Path, typer.Option("--dir")] = Path("var/mail"),
    host: str = "127.0.0.1",
    port: int = 1025,
) -> None:
    """Run the dev mail inbox: an SMTP server keeping each message as a .eml file."""
    try:
        from incidentflow_tools.mailbox import serve_forever
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
    from incidentflow_tools.stack import Stack

    stack = Stack(base_port=base_port)
    if credentials is not None:
        stack.use_credentials(credentials)
    stack.start(with_mailbox=mail)
    stack.wait_ready()
    typer.echo(f"incidentflow is up: ingest at {stack.url('ingest')} (OpenAPI at /docs)")
    if stack.intake_smtp_port is not None:
        typer.echo(f"mail in: smtp://localhost:{stack.intake_smtp_port}")
    if stack.console_port is not None:
        typer.echo(f"support console: http://localhost:{stack.console_port}")


@app.command()
def down() -> None:
    """Stop what ``up`` started."""
    from incidentflow_tools.stack import Stack

    Stack().stop()
    typer.echo("incidentflow is down")


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
    from incidentflow.db import with_connection
    from incidentflow.erasure import erase_customer, erase_expired

    if (customer is None) == (not expired):
        raise typer.BadParameter("give --customer ID or --expired, one of them")
    who = operator or _os_user()
    if customer is not None:
        incident_ids = asyncio.run(
            with_connection(
                _settings().database_url, lambda conn: erase_customer(conn, customer, who)
            )
        )
        masked = asyncio.run(_erase_dead_letters(customer, [str(i) for i in incident_ids]))
        typer.echo(f"masked {masked} dead letters")
        erased = len(incident_ids)
    else:
        days = _settings().retention_days
        # A transaction per batch: a large backlog does not hold its locks to the end.
        erased = asyncio.run(
            with_connection(
                _settings().database_url,
                lambda conn: erase_expired(conn, days, who),
                one_transaction=False,
            )
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


app.add_typer(dlq_app, name="dlq")
for service_cli in (ingest_cli, classifier_cli, sentiment_cli, reminder_cli):
    service_cli.register(app)


if __name__ == "__main__":
    app()
