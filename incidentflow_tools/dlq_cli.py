"""``incidentflow dlq``: the dead-letter queues, for operators. Plain, greppable lines."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import aio_pika
import asyncpg
import typer
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from contracts.topology import Route
from incidentflow import dlq
from incidentflow.settings import CommonSettings

T = TypeVar("T")

dlq_app = typer.Typer(help="Dead letters: list, show, replay to the work queue, purge (audited).")

Operator = Annotated[
    str,
    typer.Option(
        envvar="USER",
        show_envvar=False,
        default_factory=getpass.getuser,  # where USER is unset (containers)
        help="who is acting, for the audit (default: $USER)",
    ),
]


def _route(queue: str) -> Route:
    try:
        return dlq.resolve(queue)
    except dlq.UnknownQueue as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _on_broker(work: Callable[[AbstractConnection], Awaitable[T]]) -> T:
    async def run() -> T:
        connection = await aio_pika.connect(CommonSettings().rabbitmq_url, timeout=10)
        try:
            return await work(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(run())
    except ChannelNotFoundEntity as exc:
        raise _fail(f"queue not declared (run `incidentflow topology`): {exc}") from exc
    except (AMQPError, OSError, TimeoutError) as exc:
        raise _fail(f"broker: {exc!r}") from exc


def _on_broker_and_database(
    work: Callable[[AbstractConnection, asyncpg.Connection], Awaitable[T]],
) -> T:
    async def with_database(connection: AbstractConnection) -> T:
        conn = await asyncpg.connect(CommonSettings().database_url, timeout=10)
        try:
            return await work(connection, conn)
        finally:
            await conn.close()

    try:
        return _on_broker(with_database)
    except asyncpg.PostgresError as exc:
        raise _fail(f"database: {exc}") from exc


@dlq_app.command("list")
def dlq_list() -> None:
    """Every dead-letter queue with its message count, then the total."""
    total = 0
    for name, count in _on_broker(dlq.counts):
        typer.echo(f"{name} {'not-declared' if count is None else count}")
        total += count or 0
    typer.echo(f"total {total}")


@dlq_app.command("show")
def dlq_show(
    queue: Annotated[str, typer.Argument(help="a DLQ (or its work queue) name")],
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
) -> None:
    """The first messages of one DLQ, one line each; they stay in the queue, in order."""
    route = _route(queue)
    letters = _on_broker(lambda connection: dlq.browse(connection, route, limit))
    for letter in letters:
        typer.echo(letter.line())
    typer.echo(f"shown {len(letters)} of {route.dead_letter_queue.name}")


@dlq_app.command("replay")
def dlq_replay(
    queue: Annotated[str, typer.Argument(help="a DLQ (or its work queue) name")],
    operator: Operator,
    message_id: Annotated[
        list[str] | None, typer.Option("--message-id", help="replay only this one (repeatable)")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="replay every message")] = False,
) -> None:
    """Republish dead letters to their original work queue, confirmed, audited, then acked."""
    route = _route(queue)
    if bool(message_id) == replay_all:
        typer.echo("error: give --message-id ID (repeatable) or --all", err=True)
        raise typer.Exit(2)
    wanted = frozenset(message_id) if message_id else None
    replayed = _on_broker_and_database(
        lambda connection, conn: dlq.replay(connection, conn, route, operator, wanted)
    )
    for letter in replayed:
        typer.echo(f"replayed {letter.line()} to={route.queue_name}")
    typer.echo(f"replayed {len(replayed)} from {route.dead_letter_queue.name}")
    missing = sorted((wanted or frozenset()) - {letter.message_id for letter in replayed})
    if missing:
        raise _fail(f"not in {route.dead_letter_queue.name}: {', '.join(missing)}")


@dlq_app.command("purge")
def dlq_purge(
    queue: Annotated[str, typer.Argument(help="a DLQ (or its work queue) name")],
    operator: Operator,
    yes: Annotated[bool, typer.Option("--yes", help="really delete the messages")] = False,
) -> None:
    """Delete every message of one DLQ (audited). Refuses without --yes."""
    route = _route(queue)
    if not yes:
        typer.echo(
            f"error: purging deletes every message of {route.dead_letter_queue.name}; "
            "add --yes to do it",
            err=True,
        )
        raise typer.Exit(2)
    purged = _on_broker_and_database(
        lambda connection, conn: dlq.purge(connection, conn, route, operator)
    )
    typer.echo(f"purged {purged} from {route.dead_letter_queue.name}")
