"""The seed's "Testing Quick Reference", end to end, through six real processes."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import httpx

from contracts.grants import SERVICE_GRANTS
from contracts.topology import WORK_ROUTES
from incidentflow_tools.stack import Stack
from tests.e2e.conftest import (
    REMINDER_DELAY_SECONDS,
    incident,
    plain_text,
    read_inbox,
    submit,
    wait_until,
)
from tests.incidentflow.test_asyncapi import asyncapi_errors


def test_seed_examples_answer_201_with_the_seed_fields(seed_incidents: dict[str, Any]) -> None:
    for body in seed_incidents.values():
        assert set(body) == {
            "incident_id",
            "ticket_id",
            "status",
            "classification",
            "confidence",
            "message",
        }
        assert body["status"] == "open"
        assert body["ticket_id"]
        assert 0 <= body["confidence"] <= 1
    assert seed_incidents["furious"]["classification"] == "duplicate_payment"
    assert seed_incidents["neutral"]["classification"] == "duplicate_payment"
    assert "Sentiment: negative" in seed_incidents["furious"]["message"]


def test_sentiment_matches_the_seed_ranges(stack: Stack, seed_incidents: dict[str, Any]) -> None:
    furious = incident(stack, seed_incidents["furious"]["incident_id"])
    neutral = incident(stack, seed_incidents["neutral"]["incident_id"])
    grateful = incident(stack, seed_incidents["grateful"]["incident_id"])
    assert furious["sentiment"] == "negative" and furious["polarity"] <= -0.85
    assert neutral["sentiment"] == "neutral" and -0.1 <= neutral["polarity"] <= 0.1
    assert grateful["sentiment"] == "positive" and grateful["polarity"] >= 0.7


def test_state_shows_every_step_and_its_audit_trail(
    stack: Stack, seed_incidents: dict[str, Any]
) -> None:
    state = incident(stack, seed_incidents["furious"]["incident_id"])
    assert state["reason"] and state["classifier_model"] == "local"
    # Written by email, no phone given: the customer's channel (email) is the one used.
    assert {(n["channel"], n["status"]) for n in state["notifications"]} == {("email", "sent")}
    assert state["notifications"][0]["recipient"] == "t***@example.com"
    services = [entry["service"] for entry in state["audit"]]
    for service in ("ingest", "sentiment", "classifier", "ticketing", "notifier", "reminder"):
        assert service in services
    assert state["reminder"]["kind"] == "follow_up"


def test_dev_inbox_holds_the_acknowledgement_emails(
    stack: Stack, seed_incidents: dict[str, Any]
) -> None:
    mails = {m["Subject"]: m for m in read_inbox(stack.mail_dir)}
    for body in seed_incidents.values():
        subject = f"Support Ticket #{body['ticket_id']} - Issue Received"
        assert subject in mails
        mail = mails[subject]
        assert mail["To"] == "test@example.com"
        text = plain_text(mail)
        assert f"Ticket ID: {body['ticket_id']}" in text
        assert f"Incident Reference: {body['incident_id']}" in text
        assert "NEXT STEPS" in text
    # The customer's words are not repeated to them (NOTIFIER_QUOTE_MESSAGE is off).
    furious = seed_incidents["furious"]["ticket_id"]
    acknowledgement = plain_text(mails[f"Support Ticket #{furious} - Issue Received"])
    assert "charged TWICE" not in acknowledgement and "YOUR ISSUE" not in acknowledgement


async def test_the_seed_sql_query_works(database_url: str, seed_incidents: dict[str, Any]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT customer_id, sentiment, polarity, classification FROM incidents"
        )
    finally:
        await conn.close()
    assert {(r["customer_id"], r["sentiment"]) for r in rows} >= {
        ("99876", "negative"),
        ("99876", "neutral"),
        ("99876", "positive"),
    }


def test_open_incident_gets_its_reminder_and_resolved_one_none(stack: Stack) -> None:
    still_open = submit(stack, "My refund has not arrived after two weeks").json()
    resolved = submit(stack, "My card was declined at the supermarket").json()
    patched = httpx.patch(
        f"{stack.url('ingest')}/api/incidents/{resolved['incident_id']}",
        json={"status": "resolved"},
        timeout=10,
    )
    assert patched.status_code == 200 and patched.json()["resolved_at"]
    started = time.monotonic()
    wait_until(lambda: incident(stack, still_open["incident_id"])["reminder_sent"], 15)
    assert time.monotonic() - started < 15
    subjects = [m["Subject"] for m in read_inbox(stack.mail_dir)]
    assert f"Support Ticket #{still_open['ticket_id']} - Follow-up: Still Open" in subjects
    # Give the resolved one's delayed message time to arrive, then check it did nothing.
    time.sleep(REMINDER_DELAY_SECONDS + 2)
    state = incident(stack, resolved["incident_id"])
    assert state["reminder_sent"] is False
    assert state["reminder"]["state"] in ("cancelled", "skipped")
    subjects = [m["Subject"] for m in read_inbox(stack.mail_dir)]
    assert f"Support Ticket #{resolved['ticket_id']} - Follow-up: Still Open" not in subjects


def test_prefer_wait_zero_answers_202_with_location(stack: Stack) -> None:
    response = httpx.post(
        stack.url("ingest") + "/api/incidents",
        json={
            "customer_id": "42",
            "channel": "chat",
            "message": "where is my money",
            "email": "c@example.com",
        },
        headers={"Prefer": "wait=0"},
        timeout=10,
    )
    assert response.status_code == 202
    incident_id = response.json()["incident_id"]
    assert response.headers["Location"] == f"/api/incidents/{incident_id}"
    wait_until(lambda: incident(stack, incident_id)["acknowledged_at"] is not None, 10)


def test_list_filters_and_paginates(stack: Stack, seed_incidents: dict[str, Any]) -> None:
    url = stack.url("ingest") + "/api/incidents"
    first = httpx.get(url, params={"customer_id": "99876", "limit": 2}, timeout=10).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = httpx.get(
        url,
        params={"customer_id": "99876", "limit": 2, "cursor": first["next_cursor"]},
        timeout=10,
    ).json()
    seen = {i["incident_id"] for i in first["items"]}
    assert not seen & {i["incident_id"] for i in second["items"]}
    dupes = httpx.get(url, params={"category": "duplicate_payment"}, timeout=10).json()
    assert dupes["items"] and all(
        i["classification"] == "duplicate_payment" for i in dupes["items"]
    )
    assert httpx.get(url, params={"status": "nope"}, timeout=10).status_code == 422
    assert httpx.get(url, params={"cursor": "garbage"}, timeout=10).status_code == 422


def test_stats_count_what_happened(stack: Stack, seed_incidents: dict[str, Any]) -> None:
    stats = httpx.get(stack.url("ingest") + "/api/stats", timeout=10).json()
    assert stats["by_sentiment"]["negative"] >= 1
    assert stats["by_category"]["duplicate_payment"] >= 2
    assert stats["notifications"]["email"]["sent"] >= 3
    assert stats["by_status"]["open"] >= 3


def test_unknown_incident_is_404(stack: Stack) -> None:
    url = f"{stack.url('ingest')}/api/incidents/{uuid.uuid4()}"
    assert httpx.get(url, timeout=10).status_code == 404
    assert httpx.patch(url, json={"status": "resolved"}, timeout=10).status_code == 404


def test_every_service_reports_ready(stack: Stack) -> None:
    for name in ("ingest", "sentiment", "classifier", "ticketing", "notifier", "reminder"):
        assert httpx.get(stack.url(name) + "/health/ready", timeout=5).status_code == 200
        assert httpx.get(stack.url(name) + "/health/live", timeout=5).status_code == 200


def test_each_service_serves_its_asyncapi_document(stack: Stack) -> None:
    """Valid AsyncAPI 3.0.0; what the service consumes and what it publishes, nothing else."""
    for grants in SERVICE_GRANTS:
        response = httpx.get(stack.url(grants.service) + "/asyncapi", timeout=10)
        assert response.status_code == 200, grants.service
        document = response.json()
        assert asyncapi_errors(document) == [], grants.service
        channels = json.dumps(document["channels"])
        for route in grants.routes:
            assert f'"{route.queue_name}"' in channels, route.queue_name
        published = {
            op["channel"]["$ref"]
            for op in document["operations"].values()
            if op["action"] == "send"
        }
        expected = [*grants.publishes, *grants.delays]
        assert len(published) == len(expected), grants.service
        others = {r.queue_name for r in WORK_ROUTES if r.service != grants.service}
        assert not [queue for queue in others if f'"{queue}"' in channels], grants.service


def test_openapi_is_served(stack: Stack) -> None:
    spec = httpx.get(stack.url("ingest") + "/openapi.json", timeout=10).json()
    assert "/api/incidents" in spec["paths"] and "/api/stats" in spec["paths"]
    assert httpx.get(stack.url("ingest") + "/docs", timeout=10).status_code == 200
