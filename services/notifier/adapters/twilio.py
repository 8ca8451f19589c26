"""SMS and WhatsApp through Twilio's Messages API, and the logged stand-in without Twilio."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from services.notifier.adapters.base import Delivery, Handover, PermanentFailure, TextChannel

ATTEMPTS = 3
# Longer waits than this are left to the broker's back-off (a redelivery), not slept here,
# so one message never holds its lease and a send slot for minutes.
MAX_WAIT_SECONDS = 10.0
# Client-side problems that are ours to fix (credentials, clock): retried via redelivery
# rather than marking every message failed during a credential rotation.
OUR_CONFIGURATION = (401, 403)


class TwilioUnavailable(Exception):
    """Twilio did not take the message this time (5xx, 429, no connection)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class LoggedTexts:
    """Without a Twilio account texts are recorded as ``logged``, not sent."""

    async def send(
        self, channel: TextChannel, to: str, body: str, *, handover: Handover | None = None
    ) -> Delivery:
        return Delivery("logged")


class TwilioTexts:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        whatsapp_from: str | None = None,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        max_concurrent: int = 10,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._from = {"sms": from_number, "whatsapp": f"whatsapp:{whatsapp_from or from_number}"}
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(auth=self._auth, timeout=self._timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self, channel: TextChannel, to: str, body: str, *, handover: Handover | None = None
    ) -> Delivery:
        """Send ``body`` to ``to`` (E.164); the message's ``sid`` is the provider id.

        Twilio has no idempotency key: only failures where Twilio cannot have taken the
        message (a 5xx or 429 answer, no connection) are retried here. ``handover`` hears
        of each attempt the moment its request is written, and of its refusal.
        """
        form = {
            "To": f"whatsapp:{to}" if channel == "whatsapp" else to,
            "From": self._from[channel],
            "Body": body,
        }
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TwilioUnavailable),
            stop=stop_after_attempt(ATTEMPTS) | _TooLongToWait(),
            wait=_backoff,
            reraise=True,
        )
        async with self._slots:
            async for attempt in retrying:
                with attempt:
                    response = await self._post(form, handover)
        sid = response.json().get("sid")
        if not isinstance(sid, str):
            raise TwilioUnavailable(f"Twilio answered {response.status_code} without a sid")
        return Delivery("sent", sid)

    async def _post(self, form: dict[str, str], handover: Handover | None) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("TwilioTexts used before open()")

        async def trace(event: str, info: dict[str, Any]) -> None:
            # httpcore's trace hook runs as the request's last byte is written, with no
            # await between: a form of a few hundred bytes goes to the kernel whole.
            if handover is not None and event == "http11.send_request_body.complete":
                handover.handed_over()

        try:
            response = await self._client.post(self._url, data=form, extensions={"trace": trace})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TwilioUnavailable(f"Twilio unreachable: {exc!r}") from exc
        if handover is not None and not response.is_success:
            # Refused: taken back before the retry's back-off, which a kill may cut short.
            handover.taken_back()
        if response.status_code == 429 or response.status_code >= 500:
            raise TwilioUnavailable(
                f"Twilio answered {response.status_code}",
                _retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code in OUR_CONFIGURATION:
            raise RuntimeError(f"Twilio refused our credentials: {response.status_code}")
        if response.status_code >= 400:
            raise PermanentFailure(f"Twilio rejected the message: {_twilio_error(response)}")
        return response


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, given as seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class _TooLongToWait(stop_base):
    """Stop when Twilio asks for a longer wait than we sleep in-process."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome else None
        wait = exc.retry_after if isinstance(exc, TwilioUnavailable) else None
        return wait is not None and wait > MAX_WAIT_SECONDS


def _backoff(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TwilioUnavailable) and exc.retry_after is not None:
        return exc.retry_after
    return float(min(MAX_WAIT_SECONDS, 0.5 * 2 ** (state.attempt_number - 1)))


def _twilio_error(response: httpx.Response) -> str:
    """Twilio's error code and message (``{"code": 21211, "message": …}``), else the status."""
    try:
        body = response.json()
    except ValueError:
        return str(response.status_code)
    if isinstance(body, dict) and "code" in body:
        return f"{response.status_code} code {body['code']}: {body.get('message', '')}"[:300]
    return str(response.status_code)
