"""Every service sets its startup heap aside from the garbage collector (incidentflow/heap.py)."""

from __future__ import annotations

import json

from incidentflow_tools.stack import SERVICES, Stack


def test_every_service_freezes_its_startup_heap(stack: Stack) -> None:
    for service in SERVICES:
        frozen = [
            line
            for raw in (stack.log_dir / f"{service}.log").read_text().splitlines()
            if raw.startswith("{")
            and (line := json.loads(raw)).get("message") == "startup heap frozen"
        ]
        # Once per start, with what startup built: tens of thousands of objects at least.
        assert frozen, service
        assert all(line["frozen_objects"] > 10_000 for line in frozen), (service, frozen)
