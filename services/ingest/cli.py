"""Ingest's commands: `incidentflow api-key new|hash` and `incident show`."""

from __future__ import annotations

import asyncio
import json
import uuid

import typer

from incidentflow.db import with_connection
from incidentflow.settings import CommonSettings
from services.ingest.keys import api_key_app
from services.ingest.store import incident_details

incident_app = typer.Typer(help="Look at incidents.")


@incident_app.command("show")
def incident_show(incident_id: uuid.UUID) -> None:
    """Print an incident's whole state: steps, notifications, reminder, audit trail."""
    details = asyncio.run(
        with_connection(
            CommonSettings().database_url, lambda conn: incident_details(conn, incident_id)
        )
    )
    if details is None:
        typer.echo(f"incident {incident_id} not found", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(details, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")
    app.add_typer(api_key_app, name="api-key")
