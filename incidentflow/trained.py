"""Models a service trained at start because none was provisioned: kept for the next start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("incidentflow.models")


def keep_if_possible(save: Callable[[], None], model_dir: Path) -> None:
    """Save the model; a read-only directory (a locked-down container) only costs the next
    start the same training again."""
    try:
        save()
    except OSError as exc:
        log.warning("model trained at start not kept in %s: %s", model_dir, exc)
