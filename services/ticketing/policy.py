"""How ticketing treats its ticket system: bounded concurrency, retries, a circuit breaker and,
when all that fails, the local fallback id (reconciled later).

The breaker is a small class rather than purgatory's: purgatory treats an excluded exception
(the way to not count ``CancelledError``) as a success, which resets the failure count and, in
half-open, closes the circuit on a probe that never got an answer; it also lets every
concurrent call through while half-open instead of one probe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from incidentflow.concurrency import AdaptiveLimit
from services.ticketing.tickets import (
    CommentRequest,
    TicketRequest,
    TicketSystem,
    TicketSystemError,
    fallback_ticket_id,
)

log = logging.getLogger("incidentflow.ticketing")

T = TypeVar("T")

BreakerState = Literal["closed", "open", "half-open"]


class CircuitOpenError(TicketSystemError):
    """Not called: the ticket system failed too often lately."""

    def __init__(self) -> None:
        super().__init__("circuit open: ticket system not called", retryable=True)


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; ``probe`` when it decides whether a half-open circuit closes."""

    probe: bool


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed calls; after ``reset_seconds`` lets one
    probe through (half-open): its success closes the circuit, its failure opens it again.

    A call that ends without a verdict (cancelled: shutdown, a lost broker connection) is
    *abandoned*: it counts neither way, and a probe that is abandoned frees the probe slot.
    """

    def __init__(
        self,
        threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def would_admit(self) -> bool:
        """Whether a call made now would be let through (without taking the probe slot)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._probing)

    def admit(self) -> Permit | None:
        """A permit to call, or None: give the incident its fallback without calling."""
        state = self.state
        if state == "closed":
            return Permit(probe=False)
        if state == "half-open" and not self._probing:
            self._probing = True
            return Permit(probe=True)
        return None

    def succeeded(self, permit: Permit) -> None:
        if self._opened_at is not None:
            log.info("ticket system answers again: circuit closed")
        self._failures = 0
        self._opened_at = None
        if permit.probe:
            self._probing = False

    def failed(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False
            self._open()
        elif self._opened_at is None:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open()
        # else: a call let through before the circuit opened; it is open already.

    def abandoned(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        log.warning(
            "ticket system failing: circuit open",
            extra={"failures": self._failures, "reset_seconds": self.reset_seconds},
        )


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    # All attempts and back-offs of one create together; then the incident gets its fallback.
    deadline_seconds: float = 8.0
    # Full-jitter exponential back-off: the n-th wait is uniform in [0, backoff * 2^(n-1)].
    backoff_seconds: float = 0.25
    max_backoff_seconds: float = 2.0

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TicketSystemError) and error.retry_after is not None:
            # As asked, plus a little, so throttled callers do not return in lockstep.
            return error.retry_after * random.uniform(1.0, 1.1)
        backoff = wait_random_exponential(
            multiplier=self.backoff_seconds, max=self.max_backoff_seconds
        )
        return float(backoff(state))


class GuardedTicketSystem:
    """A TicketSystem that retries, bounds concurrency and trips a breaker around another."""

    def __init__(
        self,
        system: TicketSystem,
        *,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        max_concurrency: int,
    ) -> None:
        self.system = system
        self.retry = retry
        self.breaker = breaker
        # Calls in flight: grows while the system answers, halves when it is overloaded.
        self.in_flight = AdaptiveLimit("ticket_system", max_concurrency, initial=8)

    async def create_ticket(self, request: TicketRequest) -> str:
        return await self._guarded(
            lambda: self.system.create_ticket(request),
            incident_id=request.incident_id,
            what="ticket create",
            nothing_within="no ticket within",
        )

    async def add_comment(self, request: CommentRequest) -> None:
        """As a create: the same breaker (a comment failing says the system is failing),
        retries, deadline and concurrency bound."""
        await self._guarded(
            lambda: self.system.add_comment(request),
            incident_id=request.incident_id,
            what="ticket comment",
            nothing_within="no comment within",
        )

    async def _guarded(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        incident_id: uuid.UUID,
        what: str,
        nothing_within: str,
    ) -> T:
        permit = self.breaker.admit()
        if permit is None:
            raise CircuitOpenError()
        try:
            async with asyncio.timeout(self.retry.deadline_seconds):
                result = await self._with_retries(call, incident_id=incident_id, what=what)
        except TicketSystemError as exc:
            # A refusal (4xx) is an answer: the system is up, this request was wrong.
            (self.breaker.failed if exc.retryable else self.breaker.succeeded)(permit)
            raise
        except TimeoutError as exc:
            self.breaker.failed(permit)
            raise TicketSystemError(
                f"{nothing_within} {self.retry.deadline_seconds}s", retryable=True
            ) from exc
        except Exception:
            self.breaker.failed(permit)
            raise
        except BaseException:
            # Cancelled (shutdown, broker restart): says nothing about the ticket system.
            self.breaker.abandoned(permit)
            raise
        self.breaker.succeeded(permit)
        return result

    async def _with_retries(
        self, call: Callable[[], Awaitable[T]], *, incident_id: uuid.UUID, what: str
    ) -> T:
        def before_sleep(state: RetryCallState) -> None:
            log.warning(
                f"{what} failed, retrying",
                extra={
                    "incident_id": str(incident_id),
                    "attempt": state.attempt_number,
                    "wait_seconds": round(state.upcoming_sleep, 3),
                    "error": repr(state.outcome.exception() if state.outcome else None),
                },
            )

        retrying = AsyncRetrying(
            # Stop before a wait that would end past the deadline (a long Retry-After
            # included): the incident gets its fallback now and reconciliation tries later.
            stop=stop_after_attempt(self.retry.max_attempts)
            | stop_before_delay(self.retry.deadline_seconds),
            wait=self.retry.wait,
            retry=retry_if_exception(self._retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self.breaker.state == "open":
                raise CircuitOpenError()  # it opened while this call was backing off
            # The bound covers calls in flight, not back-off sleeps.
            async with self.in_flight.slot() as slot:
                try:
                    return await call()
                except TicketSystemError as exc:
                    if exc.retryable:  # 429, 5xx, no answer: the system is struggling
                        slot.overloaded(exc.retry_after)
                    raise
                except TimeoutError:
                    slot.overloaded()
                    raise

        result: T = await retrying(attempt)
        return result

    def _retryable(self, error: BaseException) -> bool:
        # Once the circuit has opened (other creates failed meanwhile), retrying only adds
        # load to a system that is down: give this incident its fallback now.
        return (
            isinstance(error, TicketSystemError)
            and error.retryable
            and self.breaker.state != "open"
        )


async def open_ticket(tickets: TicketSystem, request: TicketRequest) -> tuple[str, bool]:
    """The ticket system's id, or the local fallback id (and True) when it fails."""
    try:
        return await tickets.create_ticket(request), False
    except Exception as exc:  # down, slow, refusing or circuit open: never hold the customer
        log.warning(
            "ticket system failed, using fallback id",
            extra={"incident_id": str(request.incident_id), "error": repr(exc)},
        )
    return fallback_ticket_id(request.incident_id), True
