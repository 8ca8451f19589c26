"""Background loops (outbox relay, reminder sweep, ticket reconciliation) that never die quietly.

A round can fail in ways ``except Exception`` does not see: a publisher confirm cancelled by a
dropped broker connection raises ``asyncio.CancelledError`` inside our task without anyone
having cancelled the task. Left alone that ends the loop silently, and with it the work it
does (an earlier chaos run lost 2,654 accepted incidents that way).
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType


def cancelled_by_owner() -> bool:
    """True when the running task itself is being cancelled (its stop was asked for)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class survive_round:
    """Swallows and logs whatever fails one round, except the task's own cancellation."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.failed = False

    def __enter__(self) -> survive_round:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None:
            return False
        if isinstance(exc, asyncio.CancelledError) and cancelled_by_owner():
            return False  # stop() asked for it: let the loop end
        if not isinstance(exc, Exception | asyncio.CancelledError):
            return False  # KeyboardInterrupt, SystemExit
        self.failed = True
        self.log.error(
            "%s failed, the next round tries again",
            self.what,
            exc_info=(type(exc), exc, traceback),
            extra={"error": repr(exc)},
        )
        return True
