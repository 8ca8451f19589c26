"""The reminder service's commands: `incidentflow reminders list|show|cancel|fire-now`."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer

from incidentflow.db import with_connection
from incidentflow.settings import CommonSettings
from services.reminder import actions, store
from services.reminder.store import Reminder

T = TypeVar("T")

reminders_app = typer.Typer(help="Follow-up reminders: list, show, cancel, fire now.")
OperatorOption = Annotated[
    str | None, typer.Option(help="who does it, for the audit trail (default: $USER)")
]


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
def reminders_cancel(incident_id: uuid.UUID, operator: OperatorOption = None) -> None:
    """Cancel an incident's pending reminders (audited)."""
    by = operator or getpass.getuser()
    cancelled = _run(lambda conn: actions.cancel(conn, incident_id, by))
    typer.echo(f"cancelled {len(cancelled)} reminder(s)")


@reminders_app.command("fire-now")
def reminders_fire_now(incident_id: uuid.UUID, operator: OperatorOption = None) -> None:
    """Make an incident's pending reminders due now and hand them to the reminder service."""
    settings = CommonSettings()
    by = operator or getpass.getuser()
    fired = asyncio.run(
        with_connection(
            settings.database_url,
            lambda conn: actions.fire_now(conn, settings.rabbitmq_url, incident_id, by),
            one_transaction=False,
        )
    )
    typer.echo(f"fired {len(fired)} reminder(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(reminders_app, name="reminders")
