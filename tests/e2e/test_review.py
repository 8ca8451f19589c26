"""Low-confidence incidents are flagged; agents correct categories; corrections feed training."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx

from incidentflow_tools.stack import Stack
from tests.e2e.conftest import incident


def test_low_confidence_is_flagged_for_review(stack: Stack, seed_incidents: dict[str, Any]) -> None:
    confident = incident(stack, seed_incidents["furious"]["incident_id"])
    unsure = incident(stack, seed_incidents["neutral"]["incident_id"])
    assert confident["confidence"] >= 0.9 and confident["needs_review"] is False
    assert unsure["confidence"] < 0.9 and unsure["needs_review"] is True
    stats = httpx.get(stack.url("ingest") + "/api/stats", timeout=10).json()
    assert stats["needs_review"] >= 1


def test_agent_correction_is_stored_audited_and_trains(
    stack: Stack, seed_incidents: dict[str, Any], database_url: str, tmp_path: Any
) -> None:
    incident_id = seed_incidents["neutral"]["incident_id"]
    url = f"{stack.url('ingest')}/api/incidents/{incident_id}/corrections"
    response = httpx.post(
        url,
        json={"category": "statement_error", "note": "bank statement"},
        timeout=10,
    )
    assert response.status_code == 200
    state = response.json()
    assert state["classification"] == "statement_error" and state["needs_review"] is False
    assert state["corrections"][0]["previous"] == "duplicate_payment"
    # The caller, not a name in the body: the stack's API is open, so "anonymous".
    assert state["corrections"][0]["agent"] == "anonymous"
    assert any(e["event_name"] == "classification.corrected" for e in state["audit"])

    assert httpx.post(url, json={"category": "nonsense"}, timeout=10).status_code == 422
    named = httpx.post(url, json={"category": "other", "agent": "x"}, timeout=10)
    assert named.status_code == 422 and named.json()["detail"][0]["loc"] == ["body", "agent"]
    missing = f"{stack.url('ingest')}/api/incidents/{uuid.uuid4()}/corrections"
    assert httpx.post(missing, json={"category": "other"}, timeout=10).status_code == 404
    assert httpx.get(stack.url("ingest") + "/api/stats", timeout=10).json()["corrections"] >= 1

    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "incidentflow_tools.cli",
            "train",
            "--from-db",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": database_url},
    ).stdout
    assert "corrections from the database" in trained
    assert int(trained.split(" corrections")[0].split()[-1]) >= 1
