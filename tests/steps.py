"""Watching a service's step take whole batches (incidentflow.steps)."""

from __future__ import annotations

import dataclasses
from typing import Any

from contracts.topology import Route
from incidentflow.service import ServiceRuntime
from incidentflow.steps import Delivery


def note_whole_batches(runtime: ServiceRuntime, route: Route) -> list[tuple[int, str]]:
    """Each call of ``route``'s step for a whole batch, as (events, outcome): ``handled`` or
    the exception's class name. Calls for one event at a time are not noted."""
    step = runtime._whole_batches[route.queue_name]
    noted: list[tuple[int, str]] = []

    async def noting(deliveries: list[Delivery[Any]]) -> None:
        try:
            await step.function(deliveries)
        except Exception as exc:
            noted.append((len(deliveries), type(exc).__name__))
            raise
        noted.append((len(deliveries), "handled"))

    runtime._whole_batches[route.queue_name] = dataclasses.replace(step, function=noting)
    return noted
