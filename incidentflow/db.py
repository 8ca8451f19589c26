"""Postgres access: the asyncpg pool, database creation and migrations (alembic)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns in and out as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset (unlock advisory locks, CLOSE ALL, UNLISTEN, RESET ALL) is a
    # round trip on every release. Nothing here keeps session state: advisory locks are
    # transaction-scoped, nobody LISTENs or SETs. Only an abandoned transaction is undone.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(database_url: str, size: int = 5) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_reset_connection,
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def with_connection(
    database_url: str,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    one_transaction: bool = True,
) -> T:
    """``work`` on one connection of its own (an operator command), in one transaction unless
    it makes its own."""
    pool = await create_pool(database_url, 1)
    try:
        async with pool.acquire() as conn:
            if not one_transaction:
                return await work(conn)
            async with conn.transaction():
                return await work(conn)
    finally:
        await pool.close()


async def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it does not exist; True when it was created."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(maintenance)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # another process won the race (the catalog may report either error)
            return False
        return True
    finally:
        await conn.close()


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url))
    return config


def sqlalchemy_url(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme in {"postgres", "postgresql"} else database_url


# alembic keeps its migration context in module globals: one run per process at a time.
# Across processes the advisory lock in migrations/env.py does the same job.
_ALEMBIC_LOCK = threading.Lock()


def _upgrade(database_url: str, revision: str) -> None:
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(database_url), revision)


async def migrate(database_url: str, revision: str = "head") -> None:
    """Create the database if needed and apply every pending migration, once, in order (up
    to ``revision``: the upgrade tests start from each earlier one)."""
    await ensure_database(database_url)
    # alembic's API is synchronous and runs its own event loop: keep it off ours.
    await asyncio.to_thread(_upgrade, database_url, revision)


def head_revision() -> str | None:
    """The newest migration this code ships."""
    return ScriptDirectory.from_config(alembic_config("postgresql://unused/x")).get_current_head()


async def current_revision(database_url: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT version_num FROM alembic_version")  # type: ignore[no-any-return]
    finally:
        await conn.close()
