"""The reminder service's commands: `incidentflow reminders list|show|cancel|fire-now`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer

from incidentflow.db import with_connection
from incidentflow.settings import CommonSettings
from services.reminder import store
from services.reminder.store import Reminder

T = TypeVar("T")

reminders_app = typer.Typer(help="Follow-up reminders: list, show, cancel, fire now.")


def _run(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    return asyncio.run(with_connection(CommonSettings().database_url, work))


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
    _print_reminders(_run(lambda conn: store.listing(conn, state, limit)))


@reminders_app.command("show")
def reminders_show(incident_id: uuid.UUID) -> None:
    """The reminders of one incident."""
    reminders = _run(lambda conn: store.of_incident(conn, incident_id))
    if not reminders:
        typer.echo(f"no reminders for incident {incident_id}", err=True)
        raise typer.Exit(1)
    _print_reminders(reminders)


@reminders_app.command("cancel")
def reminders_cancel(incident_id: uuid.UUID) -> None:
    """Cancel an incident's pending reminders (audited)."""

    async def work(conn: asyncpg.Connection) -> list[Reminder]:
        cancelled = await store.cancel(conn, incident_id)
        await store.record_operator_action(conn, incident_id, "cancelled", cancelled)
        return cancelled

    typer.echo(f"cancelled {len(_run(work))} reminder(s)")


@reminders_app.command("fire-now")
def reminders_fire_now(incident_id: uuid.UUID) -> None:
    """Make an incident's pending reminders due now and hand them to the reminder service."""
    from contracts.events import ReminderDue
    from incidentflow.messaging import make_broker, publish_delayed

    settings = CommonSettings()

    async def work(conn: asyncpg.Connection) -> list[Reminder]:
        due = await store.due_now(conn, incident_id)
        await store.record_operator_action(conn, incident_id, "fired-now", due)
        return due

    async def fire() -> int:
        due = await with_connection(settings.database_url, work)
        broker = make_broker(settings.rabbitmq_url, prefetch=1)
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


def register(app: typer.Typer) -> None:
    app.add_typer(reminders_app, name="reminders")
