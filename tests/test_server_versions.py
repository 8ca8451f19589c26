"""`make test` says which servers it ran against and whether they are the deployed ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_every_place_names_the_same_server_versions() -> None:
    """compose, the kustomize dev overlay, the testcontainers fallback and the project's own
    servers (scripts/servers.sh) name one RabbitMQ major.minor and one PostgreSQL major."""
    rabbitmq, postgres = deployed("rabbitmq"), deployed("postgres")
    overlay = REPO / "deploy" / "k8s" / "overlays" / "dev"
    assert f"image: rabbitmq:{rabbitmq}-management" in (overlay / "rabbitmq.yaml").read_text()
    assert f"image: postgres:{postgres}-" in (overlay / "postgres.yaml").read_text()
    conftest = (REPO / "tests" / "conftest.py").read_text()
    assert f'RabbitMqContainer("rabbitmq:{rabbitmq}-management")' in conftest
    assert f'PostgresContainer("postgres:{postgres}-' in conftest
    servers = (REPO / "scripts" / "servers.sh").read_text()
    assert f"RABBITMQ_SERIES={rabbitmq}\n" in servers
    assert f"PG_MAJOR={postgres}\n" in servers


def test_the_servers_under_test_are_the_deployed_versions() -> None:
    """Where the project runs its own servers (make test, CI), they are the deployed ones."""
    if not os.environ.get("INCIDENTFLOW_SERVERS_CTL"):
        pytest.skip("RABBITMQ_URL / DATABASE_URL name servers of the caller's choosing")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "server_versions.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.count("(as deployed)") == 2, result.stdout
