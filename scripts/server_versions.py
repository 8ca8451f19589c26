"""Which RabbitMQ and PostgreSQL a run talks to, beside the versions the deploy files name.

`make test` prints this first, so every run says what it was tested against.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from incidentflow_tools.sandbox import broker_management_url  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")


def rabbitmq_version() -> str:
    api = httpx.URL(broker_management_url(RABBITMQ_URL))
    try:
        overview = httpx.get(
            str(api.copy_with(username=None, password=None, path="/api/overview")),
            auth=(api.username, api.password),
            timeout=5,
        )
        return str(overview.json()["rabbitmq_version"])
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return f"unknown ({type(exc).__name__})"


async def postgres_version() -> str:
    # The maintenance database: the test run creates its own databases beside it.
    url = urlunsplit(urlsplit(DATABASE_URL)._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unknown ({type(exc).__name__})"
    try:
        return str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


def deployed(image: str) -> str:
    """The tag of ``image`` in deploy/compose.yaml (rabbitmq:4.3-management → 4.3)."""
    compose = (REPO / "deploy" / "compose.yaml").read_text()
    found = re.search(rf"image: {image}:([0-9.]+)", compose)
    return found.group(1) if found else "?"


def same_release(running: str, named: str) -> bool:
    """3.10.8 is not 4.1; 17.2 is 17; 4.1.3 is 4.1."""
    return running.split(".")[: len(named.split("."))] == named.split(".")


def main() -> None:
    servers = {
        "RabbitMQ": (rabbitmq_version(), deployed("rabbitmq")),
        "PostgreSQL": (asyncio.run(postgres_version()), deployed("postgres")),
    }
    for name, (running, named) in servers.items():
        verdict = (
            "as deployed" if same_release(running, named) else f"the deploy files name {named}"
        )
        print(f"testing against {name} {running} ({verdict})")


if __name__ == "__main__":
    main()
