"""Zendesk Tickets API: ``POST /api/v2/tickets.json`` with an API token, idempotent by key.

A follow-up is an internal note (``"public": false``) added by updating the ticket,
``PUT /api/v2/tickets/{id}.json`` with ``{"ticket": {"comment": {...}}}``: Zendesk's way to add
a comment. Zendesk documents its ``Idempotency-Key`` for ticket creation only; the key is sent
with the update too, but a retry after an answer lost in transit may add the note twice.

Priority, from category and sentiment:

| category                                           | negative | neutral | positive |
|----------------------------------------------------|----------|---------|----------|
| fraud_report                                       | urgent   | urgent  | urgent   |
| account_locked, duplicate_payment, failed_payment  | urgent   | high    | high     |
| refund_request, statement_error, other             | high     | normal  | low      |
"""

from __future__ import annotations

from typing import Literal

import httpx

from services.ticketing.adapters.http import malformed, path_segment, post_json, put_json
from services.ticketing.tickets import CommentRequest, TicketRequest

Priority = Literal["urgent", "high", "normal", "low"]

# Money at risk: always urgent.
URGENT_CATEGORIES = frozenset({"fraud_report"})
# The customer cannot pay, or paid twice: high, urgent when they are upset as well.
BLOCKING_CATEGORIES = frozenset({"account_locked", "duplicate_payment", "failed_payment"})


def zendesk_priority(category: str, sentiment: str) -> Priority:
    if category in URGENT_CATEGORIES:
        return "urgent"
    if category in BLOCKING_CATEGORIES:
        return "urgent" if sentiment == "negative" else "high"
    return {"negative": "high", "positive": "low"}.get(sentiment, "normal")  # type: ignore[return-value]


class ZendeskTicketSystem:
    def __init__(
        self, client: httpx.AsyncClient, base_url: str, email: str, api_token: str
    ) -> None:
        self._client = client
        self._tickets = base_url.rstrip("/") + "/api/v2/tickets"
        self._url = self._tickets + ".json"
        self._auth = httpx.BasicAuth(f"{email}/token", api_token)

    async def create_ticket(self, request: TicketRequest) -> str:
        body = await post_json(
            self._client,
            self._url,
            {
                "ticket": {
                    "subject": request.subject,
                    "comment": {"body": _comment(request)},
                    "tags": [
                        request.category,
                        f"sentiment_{request.sentiment}",
                        f"language_{request.language}",
                        "incidentflow",
                    ],
                    "priority": zendesk_priority(request.category, request.sentiment),
                    # Findable by the incident even without the idempotency window (24 h).
                    "external_id": request.idempotency_key,
                }
            },
            # Zendesk answers a repeated key with the first ticket instead of a second one.
            headers={"Idempotency-Key": request.idempotency_key},
            auth=self._auth,
        )
        ticket = body.get("ticket") if isinstance(body, dict) else None
        ticket_id = ticket.get("id") if isinstance(ticket, dict) else None
        if ticket_id in (None, ""):
            raise malformed("ticket.id")
        return str(ticket_id)

    async def add_comment(self, request: CommentRequest) -> None:
        body = await put_json(
            self._client,
            f"{self._tickets}/{path_segment(request.ticket_id)}.json",
            # An internal note: the customer is not mailed their own words back.
            {"ticket": {"comment": {"body": request.text, "public": False}}},
            headers={"Idempotency-Key": request.idempotency_key},
            auth=self._auth,
        )
        ticket = body.get("ticket") if isinstance(body, dict) else None
        if not isinstance(ticket, dict):
            raise malformed("ticket")


def _comment(request: TicketRequest) -> str:
    return (
        f"{request.message}\n\n"
        f"Customer: {request.customer_id}\n"
        f"Category: {request.category}\n"
        f"Sentiment: {request.sentiment}\n"
        f"Language: {request.language}\n"
        f"Incident: {request.incident_id}"
    )
