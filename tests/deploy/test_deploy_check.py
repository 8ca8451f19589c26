"""What `make deploy-check` takes from deploy/compose.yaml, and the little it changes."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from deploy_check import (  # noqa: E402
    SERVICES,
    Servers,
    compose_services,
    container_arguments,
    interpolate,
    served_on,
)


def test_compose_variables_are_interpolated_as_compose_does() -> None:
    variables = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${UNSET:-d}/${EMPTY:-d}", variables) == "x/d/d"
    assert interpolate("${EMPTY-d}/${UNSET-d}/${SET}/${UNSET}", variables) == "/d/x/"
    assert interpolate("$$HOME", variables) == "$HOME"


def test_every_service_runs_hardened_with_its_compose_command() -> None:
    services = compose_services({})
    named = {"credentials": Path("/c"), "notifier-journal": Path("/j")}
    for name in SERVICES:
        arguments = container_arguments(name, services[name], named)
        assert "--read-only" in arguments
        assert arguments[arguments.index("--cap-drop") + 1] == "ALL"
        assert "no-new-privileges" in arguments
        command = served_on(services[name]["command"], 18000)
        assert command[:2] == ["uvicorn", f"services.{name}.app:app"]
        assert command[command.index("--port") + 1] == "18000"
        assert command[command.index("--host") + 1] == "127.0.0.1"
    journal = container_arguments("notifier", services["notifier"], named)
    assert "/j:/var/lib/incidentflow/notifier-journal" in journal
    credentials = [a for a in journal if a.startswith("type=bind,source=/c/notifier")]
    assert credentials == ["type=bind,source=/c/notifier,target=/run/credentials,ro"]


def test_only_the_server_addresses_change() -> None:
    servers = Servers(
        "amqp://guest:guest@127.0.0.1:5673/deploy-check-1",
        "http://guest:guest@127.0.0.1:15673/",
        "postgresql://postgres@127.0.0.1:5433/incidentflow",
    )
    migrate = compose_services({"POSTGRES_DB": "check"})["migrate"]["environment"]
    assert servers.readdress(migrate["DATABASE_URL"]) == (
        "postgresql://incidentflow:incidentflow@127.0.0.1:5433/check"
    )
    assert servers.readdress(migrate["RABBITMQ_URL"]) == (
        "amqp://incidentflow:incidentflow@127.0.0.1:5673/deploy-check-1"
    )
    assert servers.readdress(migrate["LOG_LEVEL"]) == "INFO"
