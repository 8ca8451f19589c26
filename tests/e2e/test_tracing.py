"""One incident is one trace: spans from all six services share the trace its request started."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from incidentflow_tools.stack import SERVICES, Stack
from tests.e2e.conftest import FURIOUS, submit
from tests.e2e.otlp import OtlpCollector, ReceivedSpan


def log_lines(path: Path, incident_id: str) -> list[dict[str, Any]]:
    """The JSON log lines of one incident in one service's log."""
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)
            if line.get("incident_id") == incident_id:
                lines.append(line)
    return lines


def wait_for_trace(
    collector: OtlpCollector, trace_id: str, timeout: float = 30
) -> list[ReceivedSpan]:
    """The trace's spans once all six services reported and every parent span arrived."""
    deadline = time.monotonic() + timeout
    while True:
        spans = [s for s in collector.received() if s.trace_id == trace_id]
        services = {s.service for s in spans}
        span_ids = {s.span_id for s in spans}
        if services >= set(SERVICES) and all(
            s.parent_span_id in span_ids for s in spans if s.parent_span_id
        ):
            return spans
        assert time.monotonic() < deadline, (
            f"trace {trace_id}: spans from {sorted(services)} only, or parents missing"
        )
        time.sleep(0.3)


def test_one_incident_is_one_trace_across_all_six_services(
    stack: Stack, otlp_collector: OtlpCollector
) -> None:
    # A text of its own: the seed's furious message, sent again, would be a repeat report.
    response = submit(stack, f"{FURIOUS} Order {uuid.uuid4().hex[:8]}.")
    assert response.status_code == 201, response.text
    incident_id = response.json()["incident_id"]

    # Ingest's log line for the incident names the trace its HTTP request started.
    received = log_lines(stack.log_dir / "ingest.log", incident_id)
    trace_ids = {line["trace_id"] for line in received if "trace_id" in line}
    assert len(trace_ids) == 1, received
    trace_id = trace_ids.pop()

    spans = wait_for_trace(otlp_collector, trace_id)
    # The request is the only root: every message span descends from it.
    roots = [s for s in spans if not s.parent_span_id]
    assert [(r.service, r.name) for r in roots] == [("ingest", "POST /api/incidents")]

    # And each service's log lines for the incident carry that same trace id.
    for service in ("sentiment", "classifier", "ticketing", "notifier"):
        lines = log_lines(stack.log_dir / f"{service}.log", incident_id)
        assert lines, service
        assert {line.get("trace_id") for line in lines} == {trace_id}, service
