"""`make bench`'s stand-in for autovacuum, on a Postgres that runs without it."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import asyncpg

from incidentflow_tools.sandbox import own_database

REPO = Path(__file__).resolve().parents[1]


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def churn(database_url: str) -> None:
    """Two tables of 500 rows: one with every row updated (500 dead, past autovacuum's
    50 + 20 %), one with 10 (under it). Autovacuum itself, where it runs, leaves both."""
    conn = await asyncpg.connect(database_url)
    try:
        for table in ("churned", "quiet"):
            await conn.execute(f"CREATE TABLE {table} (n int) WITH (autovacuum_enabled = off)")
            await conn.execute(f"INSERT INTO {table} SELECT generate_series(1, 500)")
            # Counted before the analyze, which then starts its table from none changed.
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.execute(f"VACUUM ANALYZE {table}")
        await conn.execute("UPDATE churned SET n = n + 1")
        await conn.execute("UPDATE quiet SET n = n + 1 WHERE n <= 10")
        await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        await conn.close()


async def vacuums(database_url: str) -> dict[str, tuple[int, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, vacuum_count, analyze_count FROM pg_stat_user_tables"
            " WHERE relname IN ('churned', 'quiet')"
        )
        return {r["relname"]: (r["vacuum_count"], r["analyze_count"]) for r in rows}
    finally:
        await conn.close()


def test_stand_in_vacuums_and_analyzes_what_autovacuum_would(database_url: str) -> None:
    bench = bench_module()
    with own_database(database_url, "standin") as url:
        asyncio.run(churn(url))
        assert asyncio.run(vacuums(url)) == {"churned": (1, 1), "quiet": (1, 1)}
        assert asyncio.run(bench.AutovacuumStandIn(url)._round()) == 1
        assert asyncio.run(vacuums(url)) == {"churned": (2, 2), "quiet": (1, 1)}


async def vacuum_settings(database_url: str, throttled: bool) -> tuple[str, str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        if throttled:
            await bench_module().throttle_as_autovacuum(conn)
        return (
            await conn.fetchval("SHOW vacuum_cost_delay"),
            await conn.fetchval("SHOW vacuum_cost_limit"),
            await conn.fetchval("SHOW autovacuum_vacuum_cost_delay"),
        )
    finally:
        await conn.close()


def test_stand_in_vacuums_at_autovacuums_pace(database_url: str) -> None:
    # A session's own VACUUM runs unthrottled (delay 0); the stand-in's sleeps as a worker's.
    delay, _, worker_delay = asyncio.run(vacuum_settings(database_url, throttled=False))
    assert delay == "0" and worker_delay != "0"
    delay, limit, worker_delay = asyncio.run(vacuum_settings(database_url, throttled=True))
    assert (delay, limit) == (worker_delay, "200")
