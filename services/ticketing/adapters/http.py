"""HTTP plumbing the ticket adapters share: JSON POST and PUT, failures as TicketSystemError."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import httpx

from services.ticketing.tickets import TicketSystemError

# A server asking for minutes is treated as minutes at most: the policy's deadline decides
# whether waiting that long is worth it at all.
RETRY_AFTER_CAP_SECONDS = 60.0


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str],
    auth: httpx.Auth | None = None,
) -> Any:
    """POST ``body``; see :func:`send_json`."""
    return await send_json(client, "POST", url, body, headers=headers, auth=auth)


async def put_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str],
    auth: httpx.Auth | None = None,
) -> Any:
    """PUT ``body``; see :func:`send_json`."""
    return await send_json(client, "PUT", url, body, headers=headers, auth=auth)


async def send_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str],
    auth: httpx.Auth | None = None,
) -> Any:
    """Send ``body`` as JSON with ``method``; the decoded JSON answer of a 2xx (None when it
    has no body), else a TicketSystemError: retryable for a transport error, 429 and 5xx, not
    for the rest (another status, an answer that is not JSON)."""
    try:
        response = await client.request(
            method, url, json=body, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
        )
    except httpx.TransportError as exc:  # refused, reset, timed out: may work next time
        raise TicketSystemError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    status = response.status_code
    if status == 429 or status >= 500:
        raise TicketSystemError(
            f"ticket API answered {status}",
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status >= 300:
        raise TicketSystemError(f"ticket API answered {status}", retryable=False)
    if not response.content:  # 204, or a 2xx that says nothing more
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise TicketSystemError("ticket API answer is not JSON", retryable=False) from exc


def path_segment(value: str) -> str:
    """``value`` as one segment of a URL path: a ticket id never reaches another resource."""
    return quote(value, safe="")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After: <seconds>`` header, capped; None when absent or a date
    (the HTTP-date form is rare from ticket APIs; the back-off covers it)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_SECONDS)


def malformed(what: str) -> TicketSystemError:
    return TicketSystemError(f"ticket API answer has no {what}", retryable=False)
