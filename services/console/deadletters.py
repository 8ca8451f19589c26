"""The dead-letter queues in the console: what ``incidentflow dlq`` does, on a page.

Counts, the first messages of one queue, replay to its work queue and purge, through the
same functions of incidentflow/dlq.py as the CLI (no second implementation); replays and
purges are audited there (dlq_replays, dlq_purges) with the signed-in operator's name. Like
``incidentflow dlq show``, a message is shown by what dlq.DeadLetter keeps of it (its ids,
queue, reason, deaths and error), never by its payload: the customer's email, phone and words
never reach the page. The error, which the runtime masked before putting it in a header, is
masked again here (anyone who may publish can set a header).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar
from urllib.parse import quote

import aio_pika
import asyncpg
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contracts.topology import Route
from incidentflow import dlq
from incidentflow.privacy import mask_text
from services.console.pages import pool, render
from services.console.session import Operator, current_operator, may_change, may_read

log = logging.getLogger("incidentflow.console")

router = APIRouter()
Signed = Annotated[Operator, Depends(current_operator)]
Csrf = Annotated[str | None, Form()]
QueueName = Annotated[str, Form(max_length=255)]
T = TypeVar("T")

TEMPLATE = "dead_letters.html.j2"
# Messages shown of the chosen queue (``incidentflow dlq show --limit``).
SHOWN = 50
# What the CLI waits for the broker (incidentflow_tools/dlq_cli.py).
BROKER_TIMEOUT_SECONDS = 10
DATABASE_TIMEOUT_SECONDS = 10
MAX_REPLAY_COUNT = 10_000


class Refused(Exception):
    """The page cannot do what was asked: answered with the page, this status and message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _route(name: str) -> Route:
    try:
        return dlq.resolve(name)
    except dlq.UnknownQueue as exc:
        raise Refused(404, str(exc)) from exc


async def _on_broker(request: Request, work: Callable[[AbstractConnection], Awaitable[T]]) -> T:
    """``work`` on a connection of its own to the broker (as the CLI connects), closed after;
    the broker's failures as Refused (503), never a 500."""
    url = request.app.state.settings.rabbitmq_url
    try:
        connection = await aio_pika.connect(url, timeout=BROKER_TIMEOUT_SECONDS)
        try:
            return await work(connection)
        finally:
            await connection.close()
    except ChannelNotFoundEntity as exc:
        raise Refused(
            409, f"queue not declared (run `incidentflow topology`): {mask_text(str(exc))}"
        ) from exc
    except (AMQPError, OSError, TimeoutError) as exc:
        log.warning("dead letters: broker unavailable", extra={"error": repr(exc)})
        raise Refused(503, f"the broker is unavailable: {mask_text(repr(exc))}") from exc


def _database_unavailable(exc: Exception) -> Refused:
    log.warning("dead letters: database unavailable", extra={"error": repr(exc)})
    return Refused(503, f"the database is unavailable: {mask_text(repr(exc))}")


@asynccontextmanager
async def _database(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the console's pool for the audit rows; the database's failures as
    Refused (503). An OSError inside is left to _on_broker: there it is the broker's."""
    connections = pool(request)
    try:
        conn = await connections.acquire(timeout=DATABASE_TIMEOUT_SECONDS)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise _database_unavailable(exc) from exc
    try:
        yield conn
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _database_unavailable(exc) from exc
    finally:
        await connections.release(conn)


def _refused(request: Request, operator: Operator, refused: Refused) -> Response:
    return render(
        request, TEMPLATE, operator, status_code=refused.status_code, error=refused.message
    )


def _done(action: str, route: Route, messages: int, operator: Operator) -> Response:
    """Logs what an operator did to a dead-letter queue, then back to its page."""
    log.info(
        f"dead letters {action}",
        extra={
            "queue": route.dead_letter_queue.name,
            "messages": messages,
            "operator": operator.name,
        },
    )
    return _back(route)


def _back(route: Route) -> Response:
    name = quote(route.dead_letter_queue.name, safe="")
    return RedirectResponse(f"/dead-letters?queue={name}", status_code=303)


def _shown(letter: dlq.DeadLetter) -> dlq.DeadLetter:
    """The letter with its error masked once more: contact data never reach the page."""
    return dataclasses.replace(letter, error=mask_text(letter.error) if letter.error else None)


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request,
    operator: Signed,
    queue: Annotated[str, Query(max_length=255)] = "",
) -> Response:
    """Every DLQ with its count (``dlq list``); the chosen one's first messages (``dlq show``)."""
    may_read(operator)
    try:
        route = _route(queue) if queue else None

        async def look(
            connection: AbstractConnection,
        ) -> tuple[list[tuple[str, int | None]], list[dlq.DeadLetter] | None]:
            counts = await dlq.counts(connection)
            if route is None or dict(counts).get(route.dead_letter_queue.name) is None:
                return counts, None  # nothing chosen, or not declared: nothing to browse
            return counts, await dlq.browse(connection, route, SHOWN)

        counts, letters = await _on_broker(request, look)
    except Refused as refused:
        return _refused(request, operator, refused)
    return render(
        request,
        TEMPLATE,
        operator,
        queues=counts,
        total=sum(count or 0 for _, count in counts),
        route=route,
        chosen_count=dict(counts).get(route.dead_letter_queue.name) if route else None,
        letters=[_shown(letter) for letter in letters] if letters is not None else None,
        shown=SHOWN,
    )


@router.post("/dead-letters/replay")
async def replay(
    request: Request,
    operator: Signed,
    queue: QueueName,
    count: Annotated[int | None, Form(ge=1, le=MAX_REPLAY_COUNT)] = None,
    csrf: Csrf = None,
) -> Response:
    """Back to the work queue, each confirmed, audited, then acked (``dlq replay``): all of
    them, or the first ``count`` (by message id, as ``dlq replay --message-id``)."""
    may_change(operator, csrf)
    try:
        route = _route(queue)

        async def work(connection: AbstractConnection) -> list[dlq.DeadLetter]:
            wanted: frozenset[str] | None = None
            if count is not None:
                first = await dlq.browse(connection, route, count)
                wanted = frozenset(letter.message_id for letter in first if letter.message_id)
                if not wanted:
                    return []
            async with _database(request) as conn:
                return await dlq.replay(connection, conn, route, operator.name, wanted)

        replayed = await _on_broker(request, work)
    except Refused as refused:
        return _refused(request, operator, refused)
    return _done("replayed", route, len(replayed), operator)


@router.post("/dead-letters/purge")
async def purge(
    request: Request,
    operator: Signed,
    queue: QueueName,
    csrf: Csrf = None,
) -> Response:
    """Delete every message of the DLQ, audited with who and how many (``dlq purge --yes``)."""
    may_change(operator, csrf)
    try:
        route = _route(queue)

        async def work(connection: AbstractConnection) -> int:
            async with _database(request) as conn:
                return await dlq.purge(connection, conn, route, operator.name)

        purged = await _on_broker(request, work)
    except Refused as refused:
        return _refused(request, operator, refused)
    return _done("purged", route, purged, operator)
