"""Generic REST ticket API: JSON POST with a bearer token (compatible with the seed's API)."""

from __future__ import annotations

import httpx

from services.ticketing.adapters.http import malformed, post_json
from services.ticketing.tickets import TicketRequest

# Where the seed-compatible APIs put the new ticket's id, in order of preference.
ID_FIELDS = ("id", "ticket_id", "key")


class RestTicketSystem:
    def __init__(self, client: httpx.AsyncClient, url: str, token: str | None) -> None:
        self._client = client
        self._url = url
        self._token = token

    async def create_ticket(self, request: TicketRequest) -> str:
        headers = {"Idempotency-Key": request.idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = await post_json(
            self._client,
            self._url,
            {
                "incident_id": str(request.incident_id),
                "category": request.category,
                "message": request.message,
                "customer_id": request.customer_id,
                "sentiment": request.sentiment,
                "language": request.language,
            },
            headers=headers,
        )
        if isinstance(body, dict):
            for field in ID_FIELDS:
                if body.get(field) not in (None, ""):
                    return str(body[field])
        raise malformed("id, ticket_id or key")
