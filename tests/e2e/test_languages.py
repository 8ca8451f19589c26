"""A customer who writes in Spanish, end to end: language detected, category and mood right,
the ticket and stats know the language, and the acknowledgement is in Spanish."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from incidentflow_tools.stack import Stack
from services.notifier.compose import SUBJECTS
from services.notifier.translations import gettext_in
from tests.e2e.conftest import incident, plain_text, read_inbox, submit, wait_until

SPANISH = "Me han cobrado dos veces la misma compra y nadie me responde, estoy harta"


@pytest.fixture(scope="module")
def spanish(stack: Stack) -> dict[str, Any]:
    response = submit(stack, SPANISH, customer_id="c1", email="ana@example.com")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_spanish_incident_is_understood(stack: Stack, spanish: dict[str, Any]) -> None:
    assert spanish["classification"] == "duplicate_payment"
    state = incident(stack, spanish["incident_id"])
    assert state["language"] == "es"
    assert state["sentiment"] == "negative" or (
        state["sentiment"] == "unknown" and state["needs_review"]
    )
    stats = httpx.get(stack.url("ingest") + "/api/stats", timeout=10).json()
    assert stats["by_language"]["es"] >= 1


async def test_the_ticket_carries_the_language(database_url: str, spanish: dict[str, Any]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        language = await conn.fetchval(
            "SELECT language FROM local_tickets WHERE incident_id = $1",
            uuid.UUID(spanish["incident_id"]),
        )
    finally:
        await conn.close()
    assert language == "es"


def test_the_acknowledgement_is_in_spanish(stack: Stack, spanish: dict[str, Any]) -> None:
    subject = gettext_in("es", SUBJECTS["ack"]).format(ticket_id=spanish["ticket_id"])
    assert subject != SUBJECTS["ack"].format(ticket_id=spanish["ticket_id"])

    def mail() -> Any:
        return next((m for m in read_inbox(stack.mail_dir) if m["Subject"] == subject), None)

    wait_until(lambda: mail() is not None, timeout=20)
    text = plain_text(mail())
    assert mail()["To"] == "ana@example.com"
    assert gettext_in("es", "NEXT STEPS") in text and "NEXT STEPS" not in text
    assert "cobrado dos veces" not in text  # not quoted back (NOTIFIER_QUOTE_MESSAGE is off)
