"""Garbage collection for a long-running service: the startup heap set aside once it is built.

A service's heap after startup (FastAPI/FastStream, pydantic models, the classifier's model,
the lexicon) is hundreds of thousands of objects that live as long as the process. CPython's
full (generation 2) collection walks all of them: under load at 200 incidents/s each took
65-206 ms of wall time here, a pause in which the process does nothing else; 2-8 ms once
they were frozen (docs/adr/0044-services-freeze-their-startup-heap.md).

``gc.freeze()`` moves every object alive at that moment to a permanent generation the
collector no longer walks, so later full collections cover only what was allocated since.
Nothing is leaked: frozen objects are still freed by reference counting; only reference
cycles among them would wait for ``gc.unfreeze()``, and startup objects are not garbage.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("incidentflow")


def freeze_startup_heap() -> None:
    """Collect what startup left behind, then freeze the rest. Call once, when ready."""
    gc.collect()
    gc.freeze()
    log.info("startup heap frozen", extra={"frozen_objects": gc.get_freeze_count()})
