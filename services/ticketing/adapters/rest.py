"""Generic REST ticket API: JSON POST with a bearer token (compatible with the seed's API)."""

from __future__ import annotations

import httpx

from services.ticketing.tickets import TicketRequest


class TicketApiError(RuntimeError):
    pass


class RestTicketSystem:
    def __init__(self, client: httpx.AsyncClient, url: str, token: str | None) -> None:
        self._client = client
        self._url = url
        self._token = token

    async def create_ticket(self, request: TicketRequest) -> str:
        headers = {"Idempotency-Key": request.idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        response = await self._client.post(
            self._url,
            json={
                "incident_id": str(request.incident_id),
                "category": request.category,
                "message": request.message,
                "customer_id": request.customer_id,
                "sentiment": request.sentiment,
            },
            headers=headers,
        )
        if response.status_code >= 300:
            raise TicketApiError(f"ticket API answered {response.status_code}")
        body = response.json()
        ticket_id = body.get("ticket_id") or body.get("id") if isinstance(body, dict) else None
        if ticket_id in (None, ""):
            raise TicketApiError("ticket API response has no id")
        return str(ticket_id)
