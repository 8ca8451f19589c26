"""`make bench-reminders` at a small COUNT: every reminder fires once, and the last line is
the one operators' tooling reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("rate", ["0", "600"])  # as fast as confirmed; paced (open loop)
def test_small_benchmark_loses_nothing_and_duplicates_nothing(
    rate: str, rabbitmq_url: str, database_url: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "scripts/bench_reminders.py",
            *("--count", "300", "--delay", "3", "--rate", rate),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"scheduled=(\d+) fired=(\d+) lost=(\d+) duplicates=(\d+) p99_lateness_ms=(-?\d+)", last
    )
    assert match, last
    scheduled, fired, lost, duplicates, _ = map(int, match.groups())
    assert (scheduled, fired, lost, duplicates) == (300, 300, 0, 0)
