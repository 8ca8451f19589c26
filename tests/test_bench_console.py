"""`make bench-console` on a small database: it runs end to end, drops its database, and its
last line is the one the issue's target reads (scripts/bench_console.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

REPO = Path(__file__).resolve().parents[1]
LAST_LINE = re.compile(r"list_p95_ms=(\d+) incident_p95_ms=(\d+) overview_p95_ms=(\d+|NA)")


def bench_console() -> ModuleType:
    path = REPO / "scripts" / "bench_console.py"
    spec = importlib.util.spec_from_file_location("bench_console", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_console"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def database_exists(server_url: str, name: str) -> bool:
    conn = await asyncpg.connect(urlunsplit(urlsplit(server_url)._replace(path="/postgres")))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


def test_small_benchmark_prints_its_figures_and_drops_its_database(
    database_url: str,
    rabbitmq_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    # The overview asks the broker for its dead letters: this run's vhost, not the default.
    monkeypatch.setenv("RABBITMQ_URL", rabbitmq_url)
    monkeypatch.setenv("BENCH_INCIDENTS", "2000")
    monkeypatch.setenv("BENCH_REQUESTS", "20")
    bench_console().main()
    lines = capsys.readouterr().out.strip().splitlines()

    assert lines[0].startswith("database: incidentflow_bench-console_"), lines[0]
    name = lines[0].split()[1]
    assert not asyncio.run(database_exists(database_url, name))
    assert any(line.startswith("fill: 2000 incidents in ") for line in lines)
    for endpoint in ("list none:", "list q=Decathlon:", "list page 2 (cursor):", "page incident:"):
        assert any(line.startswith(endpoint) and " n=20 " in line for line in lines), endpoint
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-1]
    figures = [int(value) for value in match.groups() if value != "NA"]
    assert len(figures) >= 2 and all(value > 0 for value in figures), lines[-1]


def test_an_overview_not_built_is_na() -> None:
    bench = bench_console()
    times = [float(ms) for ms in range(1, 101)]
    lists = [bench.Endpoint("none", lambda _: ("/incidents", {}), times)]
    incident = bench.Endpoint("incident", lambda _: ("/incidents/x", {}), times)
    floor = bench.Endpoint("/health/live", lambda _: ("/health/live", {}), times)
    lines = bench.report(bench.Measured(lists, incident, None, floor))
    assert "not built" in lines[-3]
    assert lines[-1] == "list_p95_ms=95 incident_p95_ms=95 overview_p95_ms=NA"
