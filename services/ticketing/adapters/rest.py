"""Generic REST ticket API: JSON POST with a bearer token (compatible with the seed's API).

A ticket is created by ``POST {url}`` and commented by ``POST {url}/{ticket_id}/comments``
(``url`` being the tickets collection), each with an ``Idempotency-Key``.
"""

from __future__ import annotations

import httpx

from services.ticketing.adapters.http import malformed, path_segment, post_json
from services.ticketing.tickets import CommentRequest, TicketRequest

# Where the seed-compatible APIs put the new ticket's id, in order of preference.
ID_FIELDS = ("id", "ticket_id", "key")


class RestTicketSystem:
    def __init__(self, client: httpx.AsyncClient, url: str, token: str | None) -> None:
        self._client = client
        self._url = url
        self._token = token

    def _headers(self, idempotency_key: str) -> dict[str, str]:
        headers = {"Idempotency-Key": idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def create_ticket(self, request: TicketRequest) -> str:
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
            headers=self._headers(request.idempotency_key),
        )
        if isinstance(body, dict):
            for field in ID_FIELDS:
                if body.get(field) not in (None, ""):
                    return str(body[field])
        raise malformed("id, ticket_id or key")

    async def add_comment(self, request: CommentRequest) -> None:
        # Any 2xx JSON answer is the comment added: nothing in it is needed.
        await post_json(
            self._client,
            f"{self._url.rstrip('/')}/{path_segment(request.ticket_id)}/comments",
            {
                "incident_id": str(request.incident_id),
                "message_id": request.message_id,
                "channel": request.channel,
                "body": request.text,
            },
            headers=self._headers(request.idempotency_key),
        )
