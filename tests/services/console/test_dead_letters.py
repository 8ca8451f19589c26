"""The console's dead-letters page against a real RabbitMQ (a vhost of its own, the whole
topology declared) and a real Postgres: what ``incidentflow dlq`` does, through the same
functions, audited with the signed-in operator; never a customer's personal data."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from contracts.events import IncidentScored
from contracts.topology import CLASSIFIER_SCORED, DEAD_LETTERS, WORK_ROUTES
from incidentflow.messaging import (
    ERROR_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    declare_all,
    make_broker,
)
from incidentflow_tools.sandbox import own_vhost
from tests.conftest import RABBITMQ_URL
from tests.queues import take
from tests.services.console.conftest import KEYS, OPERATE_KEY, READ_KEY, serving, signed_in

DLQ = CLASSIFIER_SCORED.dead_letter_queue.name
WORK_QUEUE = CLASSIFIER_SCORED.queue_name
EMAIL = "jane.doe@example.com"
WORDS = "My card was swallowed by the ATM on Harbour Street"
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture(scope="module")
def broker_url(rabbitmq_url: str) -> Iterator[str]:
    """A fresh vhost with the whole topology: the counts here are this module's alone."""
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base, "console-dlq") as url:
        asyncio.run(declare_all(url))
        yield url


@pytest.fixture(autouse=True)
async def empty_queues(broker_url: str) -> None:
    """Each test starts with the classifier's work queue and DLQ empty."""
    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        for name in (DLQ, WORK_QUEUE):
            await (await channel.get_queue(name)).purge()
    finally:
        await connection.close()


@pytest.fixture
async def console(broker_url: str, console_database: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(console_database, KEYS, rabbitmq_url=broker_url) as client:
        yield client


async def count(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    try:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


async def wait_for_count(url: str, queue: str, expected: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (found := await count(url, queue)) != expected:
        assert time.monotonic() < deadline, f"{queue}: {found} != {expected}"
        await asyncio.sleep(0.1)


async def arrived(url: str, queue: str, timeout: float = 10.0) -> list[AbstractIncomingMessage]:
    """What reaches ``queue``, waiting until something has: a replay is confirmed once the
    broker has it, and may pass through the delay exchanges before it is in the queue."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (taken := await take(url, queue)):
        assert asyncio.get_running_loop().time() < deadline, f"nothing reached {queue}"
        await asyncio.sleep(0.05)
    return taken


async def poison(url: str, incident_id: uuid.UUID, message_id: str) -> None:
    """An invalid incident.scored carrying the customer's email and words, consumed by a real
    subscriber whose DeliveryPolicy dead-letters it with its error in the headers (as
    tests/incidentflow/test_dlq.py does)."""
    broker = make_broker(url, prefetch=1)
    seen: list[IncidentScored] = []

    @broker.subscriber(CLASSIFIER_SCORED.queue, CLASSIFIER_SCORED.source)
    async def on_scored(event: IncidentScored) -> None:
        seen.append(event)

    before = await count(url, DLQ)
    await broker.start()
    try:
        await broker.publish(
            # No polarity, no created_at, a sentiment not one of the three.
            {
                "incident_id": str(incident_id),
                "customer_id": "cust-dlq",
                "channel": "email",
                "email": EMAIL,
                "message": WORDS,
                "sentiment": "furious",
            },
            exchange=CLASSIFIER_SCORED.source,
            routing_key=CLASSIFIER_SCORED.routing_key,
            persist=True,
            message_id=message_id,
        )
        await wait_for_count(url, DLQ, before + 1)
    finally:
        await broker.stop()
    assert seen == []


async def dead_letter_directly(
    url: str,
    incident_id: uuid.UUID,
    message_id: str,
    error: str = f"LookupError: no ticket for {EMAIL}",
) -> None:
    """A dead letter as the runtime leaves one after its retries, put straight into the DLQ;
    its error header names the customer's email (anyone who may publish can set one)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(DEAD_LETTERS.name)
        body = {"incident_id": str(incident_id), "email": EMAIL, "message": WORDS}
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                message_id=message_id,
                type=IncidentScored.name,
                content_type="application/json",
                headers={
                    ERROR_HEADER: error,
                    REASON_HEADER: "retries-exhausted",
                    QUEUE_HEADER: WORK_QUEUE,
                },
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=WORK_QUEUE,  # the DLQ's binding key is its work queue's name
        )
    finally:
        await connection.close()


async def rows(pool: asyncpg.Pool, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with pool.acquire() as conn:
        return [tuple(row) for row in await conn.fetch(query, *args)]


async def replays_of(pool: asyncpg.Pool, message_id: str) -> list[tuple[Any, ...]]:
    return await rows(
        pool,
        "SELECT queue, original_queue, message_id, incident_id, operator FROM dlq_replays"
        " WHERE message_id = $1 ORDER BY id",
        message_id,
    )


def counted(page: str, queue: str, messages: int) -> bool:
    """The queues table shows ``messages`` for ``queue``."""
    return re.search(rf">{re.escape(queue)}</a></td>\s*<td>{messages}</td>", page) is not None


async def test_without_a_session_the_page_sends_to_sign_in(console: httpx.AsyncClient) -> None:
    answer = await console.get("/dead-letters")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=/dead-letters"


async def test_a_reader_sees_counts_and_errors_never_personal_data_and_changes_nothing(
    console: httpx.AsyncClient, broker_url: str, pool: asyncpg.Pool
) -> None:
    poisoned, retried = uuid.uuid4(), uuid.uuid4()
    poisoned_id, retried_id = f"poison-{poisoned}", f"retried-{retried}"
    await poison(broker_url, poisoned, poisoned_id)
    await dead_letter_directly(broker_url, retried, retried_id)
    await wait_for_count(broker_url, DLQ, 2)
    token = await signed_in(console, READ_KEY)

    listing = await console.get("/dead-letters")
    assert listing.status_code == 200
    assert counted(listing.text, DLQ, 2)
    assert all(route.dead_letter_queue.name in listing.text for route in WORK_ROUTES)
    assert f'href="/dead-letters?queue={DLQ}"' in listing.text

    # Shown twice: the same page, nothing taken.
    pages = [(await console.get("/dead-letters", params={"queue": DLQ})).text for _ in range(2)]
    page = pages[0]
    assert pages[0] == pages[1]
    assert page.index(poisoned_id) < page.index(retried_id)  # oldest first
    assert str(poisoned) in page and str(retried) in page
    assert "invalid-payload" in page and "retries-exhausted" in page
    assert "polarity: Field required" in page and "created_at: Field required" in page
    assert "LookupError: no ticket for j***@example.com" in page  # masked on the page
    assert EMAIL not in page and "jane.doe" not in page and WORDS not in page
    assert "Harbour" not in page
    # No forms it could not use.
    assert "/dead-letters/replay" not in page and "/dead-letters/purge" not in page

    for action in ("replay", "purge"):
        refused = await console.post(f"/dead-letters/{action}", data={"queue": DLQ, "csrf": token})
        assert refused.status_code == 403
    assert await count(broker_url, DLQ) == 2
    assert await replays_of(pool, poisoned_id) == []
    assert await rows(pool, "SELECT id FROM dlq_purges WHERE operator = 'key:auditors'") == []


async def test_an_operator_replays_to_the_work_queue_audited(
    console: httpx.AsyncClient, broker_url: str, pool: asyncpg.Pool
) -> None:
    incident_id = uuid.uuid4()
    message_id = f"poison-{incident_id}"
    await poison(broker_url, incident_id, message_id)
    token = await signed_in(console, OPERATE_KEY)

    page = await console.get("/dead-letters", params={"queue": DLQ})
    assert page.status_code == 200
    assert 'action="/dead-letters/replay"' in page.text
    assert f'name="csrf" value="{token}"' in page.text
    assert '<label for="replay-count">' in page.text and "<caption>" in page.text
    assert page.text.index("<h1>") < page.text.index("<h2")

    # The work queue's name stands for its DLQ, as on the command line; an empty count: all.
    replayed = await console.post(
        "/dead-letters/replay", data={"queue": WORK_QUEUE, "count": "", "csrf": token}
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"] == f"/dead-letters?queue={DLQ}"
    assert await count(broker_url, DLQ) == 0
    back = await arrived(broker_url, WORK_QUEUE)
    assert [m.message_id for m in back] == [message_id]
    assert json.loads(back[0].body)["incident_id"] == str(incident_id)
    assert (back[0].headers or {})["x-incidentflow-replayed-from"] == DLQ
    assert ERROR_HEADER not in (back[0].headers or {})
    assert await replays_of(pool, message_id) == [
        (DLQ, WORK_QUEUE, message_id, str(incident_id), "key:agents")
    ]
    assert counted((await console.get("/dead-letters")).text, DLQ, 0)


async def test_an_operator_replays_the_first_few(
    console: httpx.AsyncClient, broker_url: str, pool: asyncpg.Pool
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await dead_letter_directly(broker_url, first, f"first-{first}")
    await dead_letter_directly(broker_url, second, f"second-{second}")
    await wait_for_count(broker_url, DLQ, 2)
    token = await signed_in(console, OPERATE_KEY)

    replayed = await console.post(
        "/dead-letters/replay", data={"queue": DLQ, "count": "1", "csrf": token}
    )
    assert replayed.status_code == 303
    assert [m.message_id for m in await arrived(broker_url, WORK_QUEUE)] == [f"first-{first}"]
    page = (await console.get("/dead-letters", params={"queue": DLQ})).text
    assert f"second-{second}" in page and f"first-{first}" not in page
    assert [r[-1] for r in await replays_of(pool, f"first-{first}")] == ["key:agents"]
    assert await replays_of(pool, f"second-{second}") == []


async def test_an_operator_purges_audited(
    console: httpx.AsyncClient, broker_url: str, pool: asyncpg.Pool
) -> None:
    await poison(broker_url, uuid.uuid4(), f"poison-{uuid.uuid4()}")
    await dead_letter_directly(broker_url, uuid.uuid4(), f"retried-{uuid.uuid4()}")
    await wait_for_count(broker_url, DLQ, 2)
    token = await signed_in(console, OPERATE_KEY)
    before = await rows(pool, "SELECT id FROM dlq_purges")

    purged = await console.post("/dead-letters/purge", data={"queue": DLQ, "csrf": token})
    assert purged.status_code == 303
    assert purged.headers["location"] == f"/dead-letters?queue={DLQ}"
    assert await count(broker_url, DLQ) == 0
    assert await count(broker_url, WORK_QUEUE) == 0  # deleted, not replayed
    audit = await rows(
        pool,
        "SELECT queue, messages, operator FROM dlq_purges WHERE NOT (id = ANY($1)) ORDER BY id",
        [row[0] for row in before],
    )
    assert audit == [(DLQ, 2, "key:agents")]


async def test_a_form_without_its_csrf_token_is_refused(
    console: httpx.AsyncClient, broker_url: str, pool: asyncpg.Pool
) -> None:
    message_id = f"retried-{uuid.uuid4()}"
    await dead_letter_directly(broker_url, uuid.uuid4(), message_id)
    await wait_for_count(broker_url, DLQ, 1)
    await signed_in(console, OPERATE_KEY)
    before = await rows(pool, "SELECT id FROM dlq_purges")
    for action in ("replay", "purge"):
        for data in ({"queue": DLQ}, {"queue": DLQ, "csrf": "forged"}):
            refused = await console.post(f"/dead-letters/{action}", data=data)
            assert refused.status_code == 403
    assert await count(broker_url, DLQ) == 1
    assert await replays_of(pool, message_id) == []
    assert await rows(pool, "SELECT id FROM dlq_purges") == before


async def test_what_a_dead_letter_carries_is_escaped_on_the_page(
    console: httpx.AsyncClient, broker_url: str
) -> None:
    script = "<script>alert(1)</script>"
    await dead_letter_directly(broker_url, uuid.uuid4(), f"id-{script}", error=f"Bad: {script}")
    await wait_for_count(broker_url, DLQ, 1)
    await signed_in(console, READ_KEY)
    page = (await console.get("/dead-letters", params={"queue": DLQ})).text
    assert script not in page
    assert "id-&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Bad: &lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_an_unknown_queue_is_a_page_naming_it(console: httpx.AsyncClient) -> None:
    token = await signed_in(console, OPERATE_KEY)
    page = await console.get("/dead-letters", params={"queue": "nope.dlq"})
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "unknown dead-letter queue &#39;nope.dlq&#39;" in page.text
    assert DLQ in page.text  # the valid ones are named
    for action in ("replay", "purge"):
        refused = await console.post(
            f"/dead-letters/{action}", data={"queue": "nope", "csrf": token}
        )
        assert refused.status_code == 404 and "nope" in refused.text


async def test_an_unreachable_broker_is_a_503_page(console_database: str) -> None:
    async with serving(console_database, KEYS, rabbitmq_url=UNREACHABLE) as console:
        token = await signed_in(console, OPERATE_KEY)
        for answer in (
            await console.get("/dead-letters"),
            await console.get("/dead-letters", params={"queue": DLQ}),
            await console.post("/dead-letters/replay", data={"queue": DLQ, "csrf": token}),
            await console.post("/dead-letters/purge", data={"queue": DLQ, "csrf": token}),
        ):
            assert answer.status_code == 503
            assert "text/html" in answer.headers["content-type"]
            assert "the broker is unavailable" in answer.text
