"""The overview page: the last 24 hours at a glance, redrawn every 30 seconds in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console.pages import Signed, pool, render
from services.console.session import may_read
from services.ingest import store
from services.ingest.deadletters import dead_letter_counts

router = APIRouter()
HOURS = 24


def hours_until(now: datetime) -> list[datetime]:
    """The starts of the last 24 hours, oldest first, the current hour last."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=back) for back in range(HOURS - 1, -1, -1)]


def chart_data(numbers: dict[str, Any], hours: list[datetime]) -> dict[str, Any]:
    """What overview.js draws: incidents per hour by category, and acknowledgement times."""
    labels = [hour.isoformat() for hour in hours]
    by_category: dict[str, list[int]] = {}
    for row in numbers["per_hour"]:
        counts = by_category.setdefault(row["category"], [0] * len(hours))
        if row["hour"] in hours:
            counts[hours.index(row["hour"])] = row["n"]
    acknowledged = {row["hour"]: row for row in numbers["acknowledgement"]}
    return {
        "labels": labels,
        "categories": [
            {"label": category.replace("_", " "), "data": counts}
            for category, counts in sorted(by_category.items())
        ],
        "acknowledgement": {
            name: [
                round(acknowledged[hour][name], 1) if hour in acknowledged else None
                for hour in hours
            ]
            for name in ("p50", "p95")
        },
    }


@router.get("/overview", response_class=HTMLResponse)
async def overview(request: Request, operator: Signed) -> Response:
    may_read(operator)
    async with pool(request).acquire() as conn:
        numbers = await store.overview(conn)
    dead_letters = await dead_letter_counts(request.app.state.settings.rabbitmq_url)
    hours = hours_until(datetime.now(UTC))
    return render(
        request,
        "overview.html.j2",
        operator,
        numbers=numbers,
        chart=chart_data(numbers, hours),
        hours=hours,
        dead_letters=dead_letters,
    )
