"""Jira Cloud REST v3: one issue per incident, found again by its label before creating.

Jira has no idempotency header, so the incident's label is the idempotency key: a create is
preceded by a JQL search for it. Jira's search index lags writes by a moment, so a redelivery
within that moment could still create a second issue; the handler's own check of
``incidents.ticket_id`` (stored right after a create) makes that window a crash window only.

A follow-up is ``POST /rest/api/3/issue/{key}/comment`` with its body in Atlassian Document
Format, as the description. Comments have no idempotency key either: a retry after an answer
lost in transit (a timeout, a 5xx after the write) may add the comment twice.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from services.ticketing.adapters.http import malformed, path_segment, post_json
from services.ticketing.tickets import CommentRequest, TicketRequest


def incident_label(request: TicketRequest) -> str:
    return f"incidentflow-{request.incident_id}"


class JiraTicketSystem:
    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        email: str,
        api_token: str,
        project: str,
        issue_type: str,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(email, api_token)
        self._project = project
        self._issue_type = issue_type

    async def create_ticket(self, request: TicketRequest) -> str:
        existing = await self._find(request)
        if existing is not None:
            return existing
        body = await post_json(
            self._client,
            self._base + "/rest/api/3/issue",
            {
                "fields": {
                    "project": {"key": self._project},
                    "issuetype": {"name": self._issue_type},
                    "summary": request.subject,
                    "description": _description(request),
                    "labels": ["incidentflow", incident_label(request), request.category],
                }
            },
            headers={"Accept": "application/json"},
            auth=self._auth,
        )
        key = body.get("key") if isinstance(body, dict) else None
        if key in (None, ""):
            raise malformed("key")
        return str(key)

    async def add_comment(self, request: CommentRequest) -> None:
        body = await post_json(
            self._client,
            f"{self._base}/rest/api/3/issue/{path_segment(request.ticket_id)}/comment",
            {"body": _document(request.text)},
            headers={"Accept": "application/json"},
            auth=self._auth,
        )
        if not isinstance(body, dict) or body.get("id") in (None, ""):
            raise malformed("id")

    async def _find(self, request: TicketRequest) -> str | None:
        # The project key is validated as [A-Z0-9_]; the label is ours: nothing to escape.
        jql = f'project = "{self._project}" AND labels = "{incident_label(request)}"'
        body = await post_json(
            self._client,
            self._base + "/rest/api/3/search/jql",
            {"jql": jql, "fields": ["key"], "maxResults": 1},
            headers={"Accept": "application/json"},
            auth=self._auth,
        )
        issues = body.get("issues") if isinstance(body, dict) else None
        if not isinstance(issues, list):
            raise malformed("issues")
        if not issues:
            return None
        key = issues[0].get("key") if isinstance(issues[0], dict) else None
        if key in (None, ""):
            raise malformed("issues[0].key")
        return str(key)


def _paragraph(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(content)}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _description(request: TicketRequest) -> dict[str, Any]:
    """The minimal Atlassian Document Format: the message, then the incident's facts."""
    facts = (
        f"Customer {request.customer_id} · category {request.category} · "
        f"sentiment {request.sentiment} · language {request.language} · "
        f"incident {request.incident_id}"
    )
    # ADF rejects empty text nodes.
    return {
        "type": "doc",
        "version": 1,
        "content": [
            _paragraph(_text(request.message or "(no message)")),
            _paragraph(_text(facts)),
        ],
    }


def _document(text: str) -> dict[str, Any]:
    """``text`` as Atlassian Document Format: a paragraph per block between blank lines, its
    lines joined by ``hardBreak`` nodes as Jira's editor writes them (ADF rejects empty text
    nodes, so blank lines leave none)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        content = [_text(lines[0])]
        for line in lines[1:]:
            content += [{"type": "hardBreak"}, _text(line)]
        paragraphs.append(_paragraph(*content))
    return {"type": "doc", "version": 1, "content": paragraphs or [_paragraph(_text("(empty)"))]}
