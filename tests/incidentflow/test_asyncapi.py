"""The system's AsyncAPI document (`incidentflow asyncapi`): valid AsyncAPI 3.0.0, with every
channel in and out and the batch framing described."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from contracts.grants import SERVICE_GRANTS
from contracts.topology import WORK_ROUTES
from incidentflow.batched_events import BATCH_CONTENT_TYPE, BATCH_HEADER

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO_ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    """What the official AsyncAPI 3.0.0 schema finds wrong with ``document``."""
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in validator.iter_errors(document)
    ]


def system_document(tmp_path: Path) -> dict[str, Any]:
    output = tmp_path / "asyncapi.json"
    result = subprocess.run(
        [sys.executable, "-m", "incidentflow_tools.cli", "asyncapi", "--output", str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(output.read_text())
    return document


def test_the_system_document_is_valid_asyncapi(tmp_path: Path) -> None:
    document = system_document(tmp_path)
    assert document["asyncapi"] == "3.0.0"
    assert asyncapi_errors(document) == []


def test_the_schema_check_rejects_a_broken_document(tmp_path: Path) -> None:
    """Guards the guard: an operation with an unknown action must not pass."""
    broken = copy.deepcopy(system_document(tmp_path))
    operation = next(iter(broken["operations"].values()))
    operation["action"] = "consume"
    assert asyncapi_errors(broken)


def test_every_queue_and_every_published_event_is_a_channel(tmp_path: Path) -> None:
    document = system_document(tmp_path)
    operations = document["operations"].values()
    receiving = json.dumps([op for op in operations if op["action"] == "receive"])
    sending = json.dumps([op for op in operations if op["action"] == "send"])
    for route in WORK_ROUTES:
        assert f"{route.queue_name}:consume" in receiving, route.queue_name
    assert "ingest.incident-acknowledged:consume" in receiving
    for grants in SERVICE_GRANTS:
        for event in grants.publishes:
            assert f"{grants.service}:{event.routing_key()}:publish" in sending
        for event in grants.delays:
            assert f"{grants.service}:{event.routing_key()}:delayed" in sending
    schemas = document["components"]["schemas"]
    assert {"IncidentReceived", "IncidentTicketed", "ReminderRequested"} <= set(schemas)
    assert schemas["IncidentReceived"]["properties"]["customer_id"]["type"] == "string"


def test_the_batch_framing_is_described(tmp_path: Path) -> None:
    description = system_document(tmp_path)["info"]["description"]
    assert BATCH_CONTENT_TYPE in description and BATCH_HEADER in description
