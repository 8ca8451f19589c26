"""The console's pages and the forms that change incidents (POST, then redirect)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import asyncpg
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from contracts.events import CATEGORIES, Category
from services.console.session import (
    Operator,
    current_operator,
    may_change,
    may_read,
    sign_in,
    sign_out,
)
from services.ingest import store
from services.ingest.cursors import decode_cursor, encode_cursor
from services.reminder import actions as reminder_actions

router = APIRouter()
SENTIMENTS = ("negative", "neutral", "positive", "unknown")
# How often the live list looks for new incidents, and how many it takes at a time.
STREAM_POLL_SECONDS = 2.0
STREAM_BATCH = 50
# A stream ends after this long and the browser opens the next (htmx's SSE extension
# reconnects): no connection outlives a deploy's shutdown by more than this.
STREAM_SECONDS = 60.0
Signed = Annotated[Operator, Depends(current_operator)]
Csrf = Annotated[str | None, Form()]


def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool()


def render(
    request: Request,
    template: str,
    operator: Operator | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        template,
        {"operator": operator, "categories": CATEGORIES, **context},
        status_code=status_code,
    )


def back_to(path: str | None, default: str) -> str:
    """Only a path of this site: a sign-in link must not send anyone elsewhere."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return default


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    if not request.app.state.authenticator.enabled:
        return RedirectResponse("/incidents", status_code=303)
    return render(request, "sign_in.html.j2", None, next=back_to(next, "/incidents"))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in_with_key(
    request: Request,
    key: Annotated[str, Form(max_length=4096)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    client = request.client.host if request.client else "unknown"
    try:
        principal = await request.app.state.authenticator.authenticate(key.strip(), client)
    except HTTPException as refused:
        return render(
            request,
            "sign_in.html.j2",
            None,
            status_code=refused.status_code,
            next=back_to(next, "/incidents"),
            error=str(refused.detail),
        )
    if not {"read", "operate"} & principal.scopes:
        return render(
            request,
            "sign_in.html.j2",
            None,
            status_code=403,
            next=back_to(next, "/incidents"),
            error="this key may neither read nor operate (scopes read, operate)",
        )
    sign_in(request, principal)
    return RedirectResponse(back_to(next, "/incidents"), status_code=303)


@router.post("/sign-out")
async def sign_out_now(request: Request, operator: Signed, csrf: Csrf = None) -> Response:
    if csrf != operator.csrf:
        raise HTTPException(403, "the form's CSRF token is missing or not this session's")
    sign_out(request)
    return RedirectResponse("/sign-in", status_code=303)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/overview", status_code=303)


def chosen(name: str, value: str, allowed: Iterable[str]) -> str | None:
    """A filter's value: None when the form left it empty ("any"), else one of ``allowed``."""
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(422, f"{name}: not one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Filters:
    """The list's filters as the form sends them ("" for any), checked."""

    status: str | None
    category: str | None
    sentiment: str | None
    language: str | None
    review: str | None
    customer: str | None
    q: str | None

    def query(self) -> dict[str, Any]:
        """list_incidents' keyword arguments for these filters."""
        return {
            "status": self.status,
            "category": self.category,
            "customer_id": self.customer,
            "sentiment": self.sentiment,
            "language": self.language,
            "needs_review": {"yes": True, "no": False}.get(self.review or ""),
            "text": self.q,
        }

    def as_params(self) -> dict[str, str]:
        return {name: value for name, value in asdict(self).items() if value}


def filters(
    status: str = "",
    category: str = "",
    sentiment: str = "",
    language: Annotated[str, Query(pattern="^([a-z]{2})?$")] = "",
    review: str = "",
    customer: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> Filters:
    # Plain strings: the filter form sends every field, "" for "any".
    return Filters(
        status=chosen("status", status, ("open", "resolved")),
        category=chosen("category", category, CATEGORIES),
        sentiment=chosen("sentiment", sentiment, SENTIMENTS),
        language=language or None,
        review=chosen("review", review, ("yes", "no")),
        customer=customer or None,
        q=q or None,
    )


Filtered = Annotated[Filters, Depends(filters)]


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(
    request: Request,
    operator: Signed,
    chosen_filters: Filtered,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    may_read(operator)
    limit = request.app.state.settings.page_size
    async with pool(request).acquire() as conn:
        rows = await store.list_incidents(
            conn,
            after=decode_cursor(cursor) if cursor else None,
            limit=limit + 1,
            **chosen_filters.query(),
        )
    more = len(rows) > limit
    rows = rows[:limit]
    following = encode_cursor(rows[-1]["created_at"], rows[-1]["incident_id"]) if more else None
    live_url = None
    if cursor is None:  # the first page takes in what arrives after it was drawn
        since = rows[0]["created_at"] if rows else datetime.now(UTC)
        live_url = "/incidents/stream?" + urlencode(
            {**chosen_filters.as_params(), "since": since.isoformat()}
        )
    return render(
        request,
        "incidents.html.j2",
        operator,
        incidents=rows,
        filters=chosen_filters.as_params(),
        next_cursor=following,
        live_url=live_url,
    )


@router.get("/incidents/stream")
async def incident_stream(
    request: Request, operator: Signed, chosen_filters: Filtered, since: datetime
) -> Response:
    """Server-sent events: each new incident matching the filters, as a row of the list."""
    may_read(operator)
    row = request.app.state.templates.env.get_template("incident_row.html.j2")

    async def events() -> AsyncIterator[str]:
        newest = since
        ends = asyncio.get_running_loop().time() + STREAM_SECONDS
        while asyncio.get_running_loop().time() < ends and not await request.is_disconnected():
            async with pool(request).acquire() as conn:
                rows = await store.list_incidents(
                    conn, after=None, limit=STREAM_BATCH, **chosen_filters.query()
                )
            fresh = [r for r in rows if r["created_at"] > newest]
            for incident in reversed(fresh):  # each goes on top: the newest ends first
                html = " ".join(row.render(incident=incident).split())
                yield f"event: incident\ndata: {html}\n\n"
            if fresh:
                newest = fresh[0]["created_at"]
            else:
                yield ": waiting\n\n"  # a write that finds a closed connection ends the loop
            await asyncio.sleep(STREAM_POLL_SECONDS)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident(request: Request, incident_id: uuid.UUID, operator: Signed) -> Response:
    may_read(operator)
    async with pool(request).acquire() as conn:
        details = await store.incident_details(conn, incident_id)
    if details is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    link = request.app.state.settings.ticket_link(details["ticket_id"], details["ticket_fallback"])
    return render(request, "incident.html.j2", operator, incident=details, ticket_link=link)


@router.post("/incidents/{incident_id}/status")
async def change_status(
    request: Request,
    incident_id: uuid.UUID,
    operator: Signed,
    status: Annotated[Literal["open", "resolved"], Form()],
    csrf: Csrf = None,
) -> Response:
    may_change(operator, csrf)
    async with pool(request).acquire() as conn, conn.transaction():
        if not await store.set_status(conn, incident_id, status, operator.name):
            raise HTTPException(404, f"incident {incident_id} not found")
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/corrections")
async def correct(
    request: Request,
    incident_id: uuid.UUID,
    operator: Signed,
    category: Annotated[Category, Form()],
    note: Annotated[str | None, Form(max_length=1000)] = None,
    next: Annotated[str | None, Form()] = None,
    csrf: Csrf = None,
) -> Response:
    may_change(operator, csrf)
    async with pool(request).acquire() as conn, conn.transaction():
        if not await store.correct_classification(
            conn, incident_id, category, operator.name, note or None
        ):
            raise HTTPException(404, f"incident {incident_id} not found")
    return RedirectResponse(back_to(next, f"/incidents/{incident_id}"), status_code=303)


@router.post("/incidents/{incident_id}/follow-ups/{action}")
async def follow_ups(
    request: Request,
    incident_id: uuid.UUID,
    action: Literal["cancel", "fire"],
    operator: Signed,
    csrf: Csrf = None,
) -> Response:
    """Cancel the incident's pending follow-ups, or send them now: `incidentflow reminders
    cancel|fire-now`, audited with the operator."""
    may_change(operator, csrf)
    async with pool(request).acquire() as conn:
        if action == "cancel":
            async with conn.transaction():
                await reminder_actions.cancel(conn, incident_id, operator.name)
        else:
            broker_url = request.app.state.settings.rabbitmq_url
            await reminder_actions.fire_now(conn, broker_url, incident_id, operator.name)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.get("/review", response_class=HTMLResponse)
async def review_queue(request: Request, operator: Signed) -> Response:
    may_read(operator)
    async with pool(request).acquire() as conn:
        rows = await store.review_queue(conn, request.app.state.settings.page_size)
    return render(request, "review.html.j2", operator, incidents=rows)
