"""`make test` says which servers it ran against and whether they are the deployed ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from server_versions import deployed, same_release  # noqa: E402


def test_a_release_matches_its_major_and_minor_only() -> None:
    assert same_release("4.1.3", "4.1")
    assert same_release("17.2", "17")
    assert not same_release("3.10.8", "4.1")
    assert not same_release("4.10.0", "4.1")
    assert not same_release("15.20", "17")


def test_the_deployed_versions_come_from_the_compose_file() -> None:
    assert deployed("rabbitmq")[0].isdigit() and deployed("postgres")[0].isdigit()


def test_it_names_the_running_servers() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "server_versions.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["RabbitMQ", "PostgreSQL"]
    assert not any("unknown" in line for line in lines), result.stdout
