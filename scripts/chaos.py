"""Chaos run: incidents at a steady rate while every service is killed and the servers restart.

Starts the whole system (six services and the SMTP sink) on a vhost and database of its own,
with a ticket API and a Twilio API on loopback that count the tickets and texts they take (one
incident in four is written by SMS, so it is acknowledged by SMS too). While COUNT incidents
arrive at
RATE/s it kills each of the six services once with SIGKILL (and starts it again), and
restarts RabbitMQ and Postgres once each and kills each once with SIGKILL (crash recovery),
through the command INCIDENTFLOW_SERVERS_CTL names (the project's own servers: make chaos never
touches the machine's). Clients behave like a real front end: a request that
gets no answer is sent again with the same Idempotency-Key.

At the end every accepted incident must be in Postgres with sentiment, classification, a real
ticket and an acknowledgement, with exactly one ticket at the ticket API, exactly one
acknowledgement email at the SMTP sink and, for an SMS incident, exactly one text at Twilio.

Usage: make chaos [N=5000 RATE=50]   (python scripts/chaos.py --count N --rate R)
Last line: accepted=N completed=N lost=N duplicate_tickets=N duplicate_emails=N; exit 1 when
anything was lost or sent twice, a request was never accepted, or the totals of incidents,
tickets, mails and texts differ from one per request (a text for every fourth).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from incidentflow.provisioning import BrokerAdmin  # noqa: E402
from incidentflow_tools.sandbox import (  # noqa: E402
    broker_management_url,
    isolated_stack,
    kill_postgres,
    kill_rabbitmq,
    restart_postgres,
    restart_rabbitmq,
    sample_incident,
)
from incidentflow_tools.stack import SERVICES, Stack  # noqa: E402
from services.notifier.notify import UNCONFIRMED  # noqa: E402
from tests.fake_tickets import REST_PATH, FakeTicketApi, fake_ticket_api  # noqa: E402
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, fake_twilio  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5432/incidentflow")
ACK_MESSAGE_ID = re.compile(r"<([0-9a-f-]{36})\.ack@incidentflow>")
TICKET_IN_TEXT = re.compile(r"Ticket #(\S+) created")
PHONE = "+14155550123"


def chaos_incident(n: int) -> dict[str, str]:
    """The load generator's request n; every fourth one written by SMS."""
    body = sample_incident("chaos", n)
    return {**body, "channel": "sms", "phone": PHONE} if n % 4 == 0 else body


@dataclass
class Run:
    stack: Stack
    tickets: FakeTicketApi
    twilio: FakeTwilio
    database_url: str
    accepted: set[uuid.UUID] = field(default_factory=set)
    refused: int = 0
    resent: int = 0
    faults: list[str] = field(default_factory=list)

    def kill(self, service: str) -> None:
        pid = self.stack.pid(service)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            while self.stack.pid(service) is not None:
                time.sleep(0.05)
        time.sleep(1.0)  # down for a moment: messages pile up for it meanwhile
        self.stack.start()

    def schedule(self) -> list[tuple[str, Callable[[], None]]]:
        kills: list[tuple[str, Callable[[], None]]] = [
            (f"kill -9 {name}", functools.partial(self.kill, name)) for name in SERVICES
        ]
        # The servers both stop gracefully and crash (kill -9: recovery from their logs).
        return [
            *kills[:2],
            ("restart rabbitmq", restart_rabbitmq),
            *kills[2:4],
            ("kill -9 rabbitmq", kill_rabbitmq),
            *kills[4:],
            ("restart postgres", restart_postgres),
            ("kill -9 postgres", kill_postgres),
        ]


async def send_all(run: Run, count: int, rate: float, deadline_s: float) -> None:
    """Open loop: request i starts at i/rate seconds, whatever became of the earlier ones."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        started = time.monotonic()

        async def one(n: int) -> None:
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            body = chaos_incident(n)
            headers = {"Idempotency-Key": f"chaos-{n}", "Prefer": "wait=0"}
            give_up = time.monotonic() + deadline_s
            first = True
            while time.monotonic() < give_up:
                if not first:
                    run.resent += 1
                first = False
                try:
                    response = await client.post(
                        run.stack.url("ingest") + "/api/incidents", json=body, headers=headers
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(1.0)
                    continue
                if response.status_code in (200, 201, 202):
                    run.accepted.add(uuid.UUID(response.json()["incident_id"]))
                    return
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            run.refused += 1

        await asyncio.gather(*(one(n) for n in range(count)))


async def inject_faults(run: Run, duration: float) -> None:
    """Spread the faults over the sending time; each runs while the load keeps flowing."""
    schedule = run.schedule()
    gap = duration / (len(schedule) + 1)
    for name, fault in schedule:
        await asyncio.sleep(gap)
        print(f"{time.strftime('%H:%M:%S')} fault: {name}", flush=True)
        await asyncio.to_thread(fault)
        run.faults.append(name)
    await asyncio.to_thread(run.stack.wait_ready, 180)


def tickets_per_incident(api: FakeTicketApi) -> Counter[uuid.UUID]:
    """Tickets the API opened, per incident (a replayed Idempotency-Key opens none)."""
    return Counter(uuid.UUID(ticket.incident_id) for ticket in list(api.tickets))


# Each mail file read once: the check runs every 2 s over thousands of them, and parsing them
# all each time starved the fake ticket API's threads in this same process.
_ACK_OF_FILE: dict[Path, uuid.UUID | None] = {}


def ack_of(path: Path) -> uuid.UUID | None:
    if path not in _ACK_OF_FILE:
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        match = ACK_MESSAGE_ID.fullmatch(str(mail.get("Message-ID", "")).strip())
        _ACK_OF_FILE[path] = uuid.UUID(match.group(1)) if match else None
    return _ACK_OF_FILE[path]


def ack_emails(mail_dir: Path) -> Counter[uuid.UUID]:
    return Counter(i for path in mail_dir.glob("*.eml") if (i := ack_of(path)) is not None)


def texts_per_ticket(twilio: FakeTwilio) -> Counter[str]:
    """Texts Twilio took, per ticket id (an acknowledgement text names its ticket)."""
    return Counter(
        match.group(1) for text in list(twilio.texts) if (match := TICKET_IN_TEXT.search(text.body))
    )


async def complete_in_db(
    database_url: str, ids: set[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, ...]]:
    """The finished incidents among ``ids``; for one written by SMS, the ticket ids its
    acknowledgement text may name: the ticket's, and the fallback id it had when the ticket
    system missed its deadline (the text went out under it; the reconciler replaced it)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """
            SELECT i.id, i.ticket_id, i.channel, r.payload->>'fallback_ticket_id' AS fallback_id
            FROM incidents i
            LEFT JOIN audit_events r
              ON r.incident_id = i.id AND r.event_name = 'ticket.reconciled'
            WHERE i.id = ANY($1::uuid[]) AND i.sentiment IS NOT NULL
              AND i.classification IS NOT NULL AND i.ticket_id IS NOT NULL
              AND NOT i.ticket_fallback AND i.acknowledged_at IS NOT NULL
            """,
            list(ids),
        )
    finally:
        await conn.close()
    return {
        row["id"]: tuple(t for t in (row["ticket_id"], row["fallback_id"]) if t)
        if row["channel"] == "sms"
        else ()
        for row in rows
    }


async def completed(run: Run) -> set[uuid.UUID]:
    """Accepted incidents done everywhere: in Postgres, at the ticket API, at the sink and,
    written by SMS, at Twilio."""
    done = await complete_in_db(run.database_url, run.accepted)
    emails = ack_emails(run.stack.mail_dir)
    tickets = tickets_per_incident(run.tickets)
    texts = texts_per_ticket(run.twilio)
    return {
        i
        for i, sms_tickets in done.items()
        if emails[i] >= 1
        and tickets[i] >= 1
        and (not sms_tickets or any(texts[t] >= 1 for t in sms_tickets))
    }


async def explain_duplicates(run: Run, emails: Counter[uuid.UUID]) -> None:
    """What the notifier recorded for each incident mailed twice, to tell the cause."""
    twice = [incident_id for incident_id, n in emails.items() if n > 1]
    if not twice:
        return
    arrivals: dict[uuid.UUID, list[str]] = {i: [] for i in twice}
    for path in run.stack.mail_dir.glob("*.eml"):
        incident_id = ack_of(path)
        if incident_id in arrivals:
            arrivals[incident_id].append(
                time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
            )
    conn = await asyncpg.connect(run.database_url)
    try:
        for incident_id in twice:
            row = await conn.fetchrow(
                "SELECT status, attempts, last_error, sent_at FROM notifications"
                " WHERE incident_id = $1 AND channel = 'email' AND kind = 'ack'",
                incident_id,
            )
            print(
                f"mailed twice: {incident_id} at {', '.join(sorted(arrivals[incident_id]))}; "
                f"row {dict(row) if row else None}",
                flush=True,
            )
    finally:
        await conn.close()


async def recorded_from_journal(database_url: str) -> dict[str, int]:
    """Messages a killed notifier had handed to a provider without recording them, which its
    successor recorded from the send journal (services/notifier/journal.py), per channel."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT channel, count(*) AS n FROM notifications"
            " WHERE provider_message_id = $1 GROUP BY channel",
            UNCONFIRMED,
        )
    finally:
        await conn.close()
    return {row["channel"]: row["n"] for row in rows}


async def explain_lost(run: Run, lost: set[uuid.UUID]) -> None:
    """How far the unfinished incidents got, step by step, and what the logs said."""
    conn = await asyncpg.connect(run.database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS incidents, count(scored_at) AS scored,
                   count(classified_at) AS classified, count(ticket_id) AS ticketed,
                   count(*) FILTER (WHERE ticket_fallback) AS fallback_tickets,
                   count(acknowledged_at) AS acknowledged
            FROM incidents WHERE id = ANY($1::uuid[])
            """,
            list(lost),
        )
        pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await conn.close()
    print(f"unfinished: {dict(row) if row else None}, outbox unpublished: {pending}", flush=True)
    broker = run.stack.env["RABBITMQ_URL"]
    vhost = unquote(urlsplit(broker).path.lstrip("/"))
    with BrokerAdmin(broker_management_url(broker), vhost) as admin:
        queues = "\n".join(
            f"{q['name']} {q.get('messages_ready', 0)} {q.get('messages_unacknowledged', 0)} "
            f"{q.get('consumers', 0)}"
            for q in admin.queues()
        )
    print("queues (name ready unacked consumers):\n" + queues, flush=True)
    for log in sorted(run.stack.log_dir.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        print(f"{log.name}: {len(lines)} error lines; last: {lines[-1][:600] if lines else '-'}")


def chaos(count: int, rate: float, settle_s: float) -> int:
    with (
        fake_ticket_api() as tickets,
        fake_twilio() as twilio,
        isolated_stack(
            RABBITMQ_URL,
            DATABASE_URL,
            "chaos",
            {
                "TICKETING_BACKEND": "rest",
                "TICKETING_URL": tickets.url + REST_PATH,
                "TICKETING_RECONCILE_INTERVAL_SECONDS": "2",
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM_NUMBER": "+14155550100",
                "TWILIO_BASE_URL": twilio.url,
                "REMINDER_ESCALATION_SECONDS": "0",
                # One load generator on one address stands for thousands of customers.
                "INGEST_RATE_LIMIT_PER_KEY": "1000000/minute",
                "NOTIFIER_LIMIT_PER_RECIPIENT": "1000000/hour",
                "LOG_LEVEL": "WARNING",
            },
        ) as (stack, database_url),
    ):
        return asyncio.run(drive(Run(stack, tickets, twilio, database_url), count, rate, settle_s))


async def drive(run: Run, count: int, rate: float, settle_s: float) -> int:
    stack, tickets = run.stack, run.tickets
    stack.start()
    try:
        stack.wait_ready(180)
        duration = count / rate
        print(f"sending {count} incidents at {rate:g}/s for {duration:.0f} s", flush=True)
        started = time.monotonic()
        await asyncio.gather(
            send_all(run, count, rate, deadline_s=120), inject_faults(run, duration)
        )
        print(
            f"sent in {time.monotonic() - started:.0f} s: accepted={len(run.accepted)} "
            f"resent={run.resent} not_accepted={run.refused}",
            flush=True,
        )
        # A notifier killed mid-send leaves a claim whose lease must run out first.
        # Waits while incidents keep completing; a minute without progress is a stall.
        deadline = time.monotonic() + settle_s
        done = await completed(run)
        progress_at = time.monotonic()
        while len(done) < len(run.accepted) and time.monotonic() < deadline:
            await asyncio.sleep(2)
            before, done = len(done), await completed(run)
            if len(done) > before:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > 90:
                break
        await asyncio.sleep(3)  # a duplicate still in flight arrives now
        emails = ack_emails(stack.mail_dir)
        per_incident = tickets_per_incident(tickets)
        texts = texts_per_ticket(run.twilio)
        await explain_duplicates(run, emails)
        journaled = await recorded_from_journal(run.database_url)
        lost = run.accepted - done
        if lost:
            await explain_lost(run, lost)
    finally:
        stack.stop()
        # The evidence outlives the run's temporary directory: var/chaos-logs/<time>/.
        kept = REPO / "var" / "chaos-logs" / time.strftime("%Y%m%dT%H%M%S")
        shutil.copytree(stack.log_dir, kept, dirs_exist_ok=True)
        print(f"service logs kept in {kept}", flush=True)
    for incident_id in sorted(lost)[:10]:
        print(f"lost: {incident_id}", flush=True)
    duplicate_tickets = sum(max(0, n - 1) for n in per_incident.values())
    duplicate_emails = sum(max(0, n - 1) for n in emails.values())
    duplicate_texts = sum(max(0, n - 1) for n in texts.values())
    print(
        "emails recorded from the notifier's send journal after its kill: "
        f"{journaled.get('email', 0)} (texts: {journaled.get('sms', 0)})"
    )
    print(f"texts={texts.total()} duplicate_texts={duplicate_texts}")
    # Every request accepted in the end (clients resend), and one of each per request.
    totals_match = len(
        run.accepted
    ) == count == per_incident.total() == emails.total() and texts.total() == len(
        range(0, count, 4)
    )
    print(
        f"requests={count} incidents={len(run.accepted)} tickets={per_incident.total()} "
        f"mails={emails.total()} texts={texts.total()} "
        f"totals {'match' if totals_match else 'DIFFER'}"
    )
    print(f"faults: {', '.join(run.faults)}")
    print(
        f"accepted={len(run.accepted)} completed={len(done)} lost={len(lost)} "
        f"duplicate_tickets={duplicate_tickets} duplicate_emails={duplicate_emails}",
        flush=True,
    )
    failed = lost or duplicate_tickets or duplicate_emails or duplicate_texts
    return 0 if totals_match and not failed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to wait at the end")
    args = parser.parse_args()
    # Stopped from outside: still stop the stack and drop the vhost and database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(chaos(args.count, args.rate, args.settle))
