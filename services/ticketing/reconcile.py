"""Reconciliation: incidents that got a fallback id get their real ticket once the ticket
system answers again, exactly once, with the same idempotency key as the first try."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from incidentflow.loops import survive_round
from services.ticketing import store
from services.ticketing.policy import CircuitBreaker
from services.ticketing.settings import RECONCILE_BATCH_SIZE
from services.ticketing.tickets import TicketSystem

log = logging.getLogger("incidentflow.ticketing")


class Reconciler:
    """A background loop: every ``interval_seconds`` (at once while full batches succeed) it
    claims fallbacks and creates their tickets, unless the breaker says the system is down."""

    def __init__(
        self,
        service: str,
        pool: Callable[[], asyncpg.Pool],
        tickets: TicketSystem,
        breaker: CircuitBreaker,
        *,
        interval_seconds: float,
        lease_seconds: float,
        batch_size: int = RECONCILE_BATCH_SIZE,
    ) -> None:
        self._service = service
        self._pool = pool
        self._tickets = tickets
        self._breaker = breaker
        self._interval = interval_seconds
        self._lease = lease_seconds
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ticket-reconciliation")
        self._task.add_done_callback(_report_end)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def reconcile_once(self) -> int:
        """One round; the number of incidents that got their real ticket."""
        if not self._breaker.would_admit():
            return 0
        async with self._pool().acquire() as conn:
            claimed = await store.claim_fallbacks(conn, self._batch_size, self._lease)
        if not claimed:
            return 0
        # The first alone: after an outage it is the breaker's probe, and the others only
        # follow once it has closed the circuit again.
        first, rest = claimed[0], claimed[1:]
        done = int(await self._reconcile(first))
        if self._breaker.would_admit():
            done += sum(await asyncio.gather(*(self._reconcile(item) for item in rest)))
        else:
            await self._release(*rest)
        log.info(
            "fallback tickets reconciled",
            extra={"claimed": len(claimed), "reconciled": done},
        )
        return done

    async def _run(self) -> None:
        while True:
            done = 0
            with survive_round(log, "ticket reconciliation"):
                done = await self.reconcile_once()
            # A full batch done means more may be waiting: no pause before the next.
            if done < self._batch_size:
                await asyncio.sleep(self._interval)

    async def _reconcile(self, item: store.ClaimedFallback) -> bool:
        incident_id = item.request.incident_id
        try:
            ticket_id = await self._tickets.create_ticket(item.request)
        except Exception as exc:
            log.info(
                "fallback not reconciled yet",
                extra={"incident_id": str(incident_id), "error": repr(exc)},
            )
            await self._release(item)
            return False
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                swapped = await store.replace_fallback(
                    conn, self._service, incident_id, item.fallback_ticket_id, ticket_id
                )
        except Exception:
            # The ticket exists; the next round finds it again by its idempotency key.
            log.exception(
                "storing reconciled ticket failed", extra={"incident_id": str(incident_id)}
            )
            await self._release(item)
            return False
        if swapped:
            log.info(
                "fallback ticket replaced",
                extra={"incident_id": str(incident_id), "ticket_id": ticket_id},
            )
        return swapped

    async def _release(self, *items: store.ClaimedFallback) -> None:
        if not items:
            return
        try:
            async with self._pool().acquire() as conn:
                await store.release_fallbacks(conn, [item.request.incident_id for item in items])
        except Exception:  # the lease runs out on its own
            log.exception("releasing claimed fallbacks failed", extra={"claimed": len(items)})


def _report_end(task: asyncio.Task[None]) -> None:
    # The loop only ends when cancelled; anything else is a bug that must not pass silently.
    if not task.cancelled() and task.exception() is not None:
        log.error("ticket reconciliation stopped", exc_info=task.exception())
