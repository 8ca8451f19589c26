"""Benchmark of the support console's pages on a database of 100,000 incidents.

Usage: make bench-console   (or: python scripts/bench_console.py)

Makes a database of its own and fills it with set-based SQL (30 days of incidents, their
acknowledgements, follow-ups, audit trail, later messages, tickets and a few corrections), then
VACUUM ANALYZE, as autovacuum would have done on a table that grew so (docs/adr/0043). Starts
the console (uvicorn, one worker, open mode: no key configured) on a loopback port against it
and, after a warm-up, requests one page at a time with one keep-alive client: the list with
each single filter, the list's second page (its cursor), one incident page (random existing
ids), and the overview where the console has one (404: not built, NA), as the page is (today it
also asks RabbitMQ at RABBITMQ_URL for the dead-letter counts). The time of a request is the
client's wall time over loopback, nothing subtracted: the server's time plus the loopback round
trip and the client's own work, which GET /health/live (no query, no template) shows as the
"harness floor", about a millisecond.

The list's filters: none, status, category, sentiment, language, review, customer (existing
ones, in turn), a text in ~1 % of the messages, a text in none (which reads every incident:
as a reference number that matches one would), and the second page (the first's cursor). The
last line: ``list_p95_ms=N incident_p95_ms=N overview_p95_ms=N`` (ms, rounded up), the list's
being the worst p95 among its filters (each single filter must meet the target).

Environment: DATABASE_URL (the server; default postgresql://localhost:5432/incidentflow),
BENCH_INCIDENTS (default 100000), BENCH_REQUESTS (requests per list filter, per incident page
and per overview; default 200), CONSOLE_PAGE_SIZE (default 50).
"""

from __future__ import annotations

import asyncio
import html
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.events import CATEGORIES  # noqa: E402
from incidentflow.settings import DEFAULT_DATABASE_URL  # noqa: E402
from incidentflow_tools.sandbox import free_port, own_database  # noqa: E402

LIST_TARGET_MS = 150
INCIDENT_TARGET_MS = 150
OVERVIEW_TARGET_MS = 300
# A word in about 1 % of the messages (a merchant's name), and one in none.
SEARCH_WORD = "Decathlon"
MISSING_WORD = "kryptonite"
SEARCH_SHARE = 0.01

LANGUAGES = ("en", "es", "fr", "de", "pt", "it")
# Cumulative shares: English most.
LANGUAGE_SHARES = (0.60, 0.72, 0.80, 0.88, 0.95, 1.0)
# Cumulative shares, in the order of CATEGORIES.
CATEGORY_SHARES = (0.18, 0.38, 0.50, 0.70, 0.80, 0.90, 1.0)
MERCHANTS = (
    "Amazon", "Zalando", "Lidl", "Aldi", "IKEA", "MediaMarkt", "Ryanair", "Booking.com", "Uber",
    "Netflix", "Spotify", "Carrefour", "Shell", "Apple", "Steam", "eBay", "Airbnb", "H&M",
    "Primark", "Vodafone", "Deliveroo", "Tesco", "Mercadona", "Fnac",
)  # fmt: skip
# English: three per category, in the order of CATEGORIES. {m} merchant, {n} a reference,
# {a} an amount.
ENGLISH = (
    "I was charged twice at {m} for order {n}, please refund the duplicate.",
    "My card shows two identical payments of {a} EUR to {m} today.",
    "The payment for invoice {n} at {m} went through two times.",
    "My card payment of {a} EUR at {m} failed but the money left my account.",
    "The transfer {n} to {m} was declined and I do not know why.",
    "Checkout at {m} keeps saying payment failed, order {n}.",
    "Someone I don't know used my card at {m}, transaction {n} is fraud.",
    "There is a payment of {a} EUR to {m} that I never made, please block my card.",
    "I think my account was hacked, I see purchases at {m} I did not make.",
    "I want a refund for order {n} at {m}, it never arrived.",
    "I returned the item to {m} two weeks ago and still have no refund of {a} EUR.",
    "Please refund the {a} EUR for the cancelled booking {n} with {m}.",
    "My account is locked after a payment at {m}, I cannot log in.",
    "The app says my account is blocked since yesterday, reference {n}, I need to pay {m}.",
    "I typed my PIN wrong and now my account is locked, my {m} order {n} is waiting.",
    "My statement shows payment {n} to {m} with the wrong amount.",
    "The monthly statement lists {a} EUR at {m} twice but I paid once.",
    "The statement date for transaction {n} at {m} is wrong.",
    "How do I change the address on my account? Reference {n}.",
    "Thank you for the quick help with payment {n} at {m}, all good now.",
    "Can I get a paper copy of my contract? My customer number is {n}.",
)
# The other languages (es, fr, de, pt, it): one per category each.
OTHERS = (
    "Me cobraron dos veces en {m} por el pedido {n}, quiero la devolución del duplicado.",
    "El pago de {a} EUR en {m} falló pero el dinero salió de mi cuenta.",
    "Alguien usó mi tarjeta en {m}, la transacción {n} es un fraude.",
    "Quiero un reembolso del pedido {n} de {m}, nunca llegó.",
    "Mi cuenta está bloqueada después de un pago en {m} y no puedo entrar.",
    "Mi extracto muestra el pago {n} a {m} con un importe incorrecto.",
    "¿Cómo cambio la dirección de mi cuenta? Referencia {n}.",
    "J'ai été débité deux fois chez {m} pour la commande {n}, merci de rembourser le doublon.",
    "Mon paiement de {a} EUR chez {m} a échoué mais l'argent a quitté mon compte.",
    "Quelqu'un a utilisé ma carte chez {m}, la transaction {n} est une fraude.",
    "Je veux un remboursement pour la commande {n} chez {m}, elle n'est jamais arrivée.",
    "Mon compte est bloqué après un paiement chez {m}, je ne peux plus me connecter.",
    "Mon relevé indique le paiement {n} à {m} avec un mauvais montant.",
    "Comment changer l'adresse de mon compte ? Référence {n}.",
    "Mir wurde bei {m} für die Bestellung {n} doppelt abgebucht, bitte erstatten Sie es.",
    "Meine Kartenzahlung über {a} EUR bei {m} ist fehlgeschlagen, aber das Geld ist weg.",
    "Jemand hat meine Karte bei {m} benutzt, die Transaktion {n} ist Betrug.",
    "Ich möchte eine Rückerstattung für die Bestellung {n} bei {m}, sie kam nie an.",
    "Mein Konto ist nach einer Zahlung bei {m} gesperrt, ich kann mich nicht anmelden.",
    "Mein Kontoauszug zeigt die Zahlung {n} an {m} mit dem falschen Betrag.",
    "Wie ändere ich die Adresse meines Kontos? Referenz {n}.",
    "Fui cobrado duas vezes na {m} pelo pedido {n}, por favor devolvam o valor duplicado.",
    "O pagamento de {a} EUR na {m} falhou mas o dinheiro saiu da minha conta.",
    "Alguém usou o meu cartão na {m}, a transação {n} é fraude.",
    "Quero o reembolso do pedido {n} da {m}, nunca chegou.",
    "A minha conta está bloqueada depois de um pagamento na {m}, não consigo entrar.",
    "O meu extrato mostra o pagamento {n} à {m} com o valor errado.",
    "Como altero a morada da minha conta? Referência {n}.",
    "Mi hanno addebitato due volte da {m} per l'ordine {n}, rimborsate il doppione.",
    "Il pagamento di {a} EUR da {m} non è andato a buon fine ma i soldi sono usciti.",
    "Qualcuno ha usato la mia carta da {m}, la transazione {n} è una frode.",
    "Voglio un rimborso per l'ordine {n} di {m}, non è mai arrivato.",
    "Il mio conto è bloccato dopo un pagamento da {m}, non riesco ad accedere.",
    "Il mio estratto conto mostra il pagamento {n} a {m} con l'importo sbagliato.",
    "Come cambio l'indirizzo del mio conto? Riferimento {n}.",
)
# Per language (in the order of LANGUAGES), four each: "" for none.
OPENERS = (
    "Hello,", "Hi team,", "Urgent:", "",
    "Hola,", "Buenos días,", "", "",
    "Bonjour,", "Madame, Monsieur,", "", "",
    "Hallo,", "Guten Tag,", "", "",
    "Olá,", "Bom dia,", "", "",
    "Buongiorno,", "Salve,", "", "",
)  # fmt: skip
CLOSERS = (
    "Thanks.", "Please help!", "This is absolutely ridiculous!", "Please call me back.",
    "Gracias.", "¡Es urgente!", "Saludos.", "",
    "Merci.", "C'est urgent !", "Cordialement.", "",
    "Danke.", "Das ist dringend!", "Mit freundlichen Grüßen.", "",
    "Obrigado.", "É urgente!", "Cumprimentos.", "",
    "Grazie.", "È urgente!", "Cordiali saluti.", "",
)  # fmt: skip
# The customer's later messages, per language, four each.
LATER = (
    "Any update on this? It has been {d} days.",
    "I still have not received my money back from {m}.",
    "Here is the screenshot you asked for, reference {n}.",
    "Why is nobody answering me? The same thing happened again at {m}.",
    "¿Alguna novedad? Ya pasaron {d} días.",
    "Todavía no recibí mi dinero de {m}.",
    "Aquí está la captura que pidieron, referencia {n}.",
    "Gracias, ya está resuelto.",
    "Des nouvelles ? Cela fait {d} jours.",
    "Je n'ai toujours pas été remboursé par {m}.",
    "Voici la capture d'écran demandée, référence {n}.",
    "Merci, c'est réglé.",
    "Gibt es Neuigkeiten? Es sind schon {d} Tage.",
    "Ich habe mein Geld von {m} immer noch nicht zurück.",
    "Hier ist der Screenshot, Referenz {n}.",
    "Danke, das hat geholfen.",
    "Alguma novidade? Já passaram {d} dias.",
    "Ainda não recebi o meu dinheiro da {m}.",
    "Aqui está a captura de ecrã, referência {n}.",
    "Obrigado, já está resolvido.",
    "Novità? Sono passati {d} giorni.",
    "Non ho ancora ricevuto il rimborso da {m}.",
    "Ecco lo screenshot richiesto, riferimento {n}.",
    "Grazie, risolto.",
)

# A merchant: SEARCH_WORD in SEARCH_SHARE of the draws, else one of MERCHANTS.
MERCHANT_SQL = f"""CASE WHEN random() < {SEARCH_SHARE} THEN '{SEARCH_WORD}'
    ELSE ($merchants::text[])[1 + floor(random() * {len(MERCHANTS)})::int] END"""


def _pick(shares: tuple[float, ...], variable: str) -> str:
    """SQL: the 0-based index of the share ``variable`` (a random() in [0, 1)) falls in."""
    cases = " ".join(f"WHEN {variable} < {share} THEN {i}" for i, share in enumerate(shares[:-1]))
    return f"CASE {cases} ELSE {len(shares) - 1} END"


def _filled(template: str) -> str:
    """SQL: ``template`` (an expression) with {m}, {n}, {a} and {d} replaced."""
    return f"""replace(replace(replace(replace({template},
        '{{m}}', {MERCHANT_SQL}),
        '{{n}}', (100000 + floor(random() * 900000))::int::text),
        '{{a}}', to_char(5 + random() * 995, 'FM9990.00')),
        '{{d}}', (2 + floor(random() * 9))::int::text)"""


INCIDENTS_SQL = f"""
WITH drawn AS (
    SELECT n,
           now() - interval '30 days' * power(random(), 1.15) AS created_at,
           random() AS r_language, random() AS r_category,
           random() AS r_sentiment, random() AS r_review, random() AS r_status,
           random() AS r_channel, random() AS r_customer, random() AS r_text,
           random() AS r_resolve, random() AS r_opener, random() AS r_closer
    FROM generate_series(1, $count::int) AS n
), picked AS (
    SELECT d.*,
           {_pick(LANGUAGE_SHARES, "r_language")} AS lang,
           {_pick(CATEGORY_SHARES, "r_category")} AS cat
    FROM drawn d
), shaped AS (
    SELECT d.*,
           'cust-' || (1 + floor(power(r_customer, 1.5) * $customers::int))::int AS customer_id,
           CASE WHEN r_channel < 0.55 THEN 'email' WHEN r_channel < 0.75 THEN 'chat'
                WHEN r_channel < 0.90 THEN 'sms' ELSE 'whatsapp' END AS channel,
           CASE WHEN cat = 6 THEN
                    CASE WHEN r_sentiment < 0.15 THEN 'negative' WHEN r_sentiment < 0.60
                         THEN 'neutral' WHEN r_sentiment < 0.95 THEN 'positive'
                         ELSE 'unknown' END
                ELSE CASE WHEN r_sentiment < 0.50 THEN 'negative' WHEN r_sentiment < 0.80
                          THEN 'neutral' WHEN r_sentiment < 0.90 THEN 'positive'
                          ELSE 'unknown' END
           END AS sentiment,
           r_review < 0.10 AS needs_review,
           -- Most of what is older than two days is resolved; the last days' mostly open.
           r_status < CASE WHEN created_at < now() - interval '2 days' THEN 0.76 ELSE 0.25 END
               AS resolved,
           CASE WHEN lang = 0 THEN ($english::text[])[1 + cat * 3 + floor(r_text * 3)::int]
                ELSE ($others::text[])[1 + (lang - 1) * 7 + cat] END AS template
    FROM picked d
), written AS (
    SELECT s.*,
           trim(both ' ' from ($openers::text[])[1 + lang * 4 + floor(r_opener * 4)::int]
                || ' ' || {_filled("template")} || ' '
                || ($closers::text[])[1 + lang * 4 + floor(r_closer * 4)::int]) AS message
    FROM shaped s
)
INSERT INTO incidents (
    id, customer_id, channel, message, email, phone, classification, confidence, reason,
    classifier_model, sentiment, polarity, language, ticket_id, ticket_fallback, status,
    created_at, scored_at, classified_at, ticketed_at, acknowledged_at, resolved_at,
    reminder_sent, needs_review, message_fingerprint, repeat_reports
)
SELECT md5('bench-console-' || n)::uuid, customer_id, channel, message,
       customer_id || '@example.com',
       CASE WHEN channel IN ('sms', 'whatsapp')
            THEN '+1415' || lpad((hashtext(customer_id) & 9999999)::text, 7, '0') END,
       ($categories::text[])[cat + 1],
       CASE WHEN needs_review THEN 0.30 + random() * 0.30 ELSE 0.62 + random() * 0.37 END,
       'words model: ' || ($categories::text[])[cat + 1],
       'local-tfidf+embeddings',
       sentiment,
       CASE sentiment WHEN 'negative' THEN -0.3 - random() * 0.65
                      WHEN 'neutral' THEN -0.05 + random() * 0.1
                      WHEN 'positive' THEN 0.3 + random() * 0.6 END,
       ($languages::text[])[lang + 1],
       'LOC-' || lpad(n::text, 6, '0'), false,
       CASE WHEN resolved THEN 'resolved' ELSE 'open' END,
       created_at,
       created_at + interval '40 ms', created_at + interval '90 ms',
       created_at + interval '150 ms', created_at + interval '900 ms',
       CASE WHEN resolved
            THEN least(now(), created_at + interval '1 hour' * (1 + r_resolve * 71)) END,
       NOT resolved AND created_at < now() - interval '1 day',
       needs_review,
       encode(sha256(convert_to(lower(message), 'UTF8')), 'hex'),
       CASE WHEN r_resolve < 0.02 THEN 1 ELSE 0 END
FROM written
ORDER BY created_at
"""

TICKETS_SQL = """
INSERT INTO local_tickets
    (number, incident_id, subject, category, sentiment, status, created_at, language)
OVERRIDING SYSTEM VALUE
SELECT substr(ticket_id, 5)::bigint, id, left(message, 80), classification, sentiment, status,
       ticketed_at, language
FROM incidents
"""

# The first acknowledgement: by mail to every customer, by text too where they wrote by text.
NOTIFICATIONS_SQL = """
INSERT INTO notifications (incident_id, channel, kind, recipient, message, status, attempts,
                           created_at, sent_at, recipient_key)
SELECT i.id, c.channel, 'ack',
       CASE c.channel WHEN 'email' THEN left(i.email, 1) || '***@example.com'
                      ELSE '+1415***' || right(i.phone, 2) END,
       'We received your report, ticket ' || i.ticket_id || '. We will get back to you soon.',
       'sent', 1, i.acknowledged_at, i.acknowledged_at + interval '200 ms',
       encode(sha256(convert_to(CASE c.channel WHEN 'email' THEN i.email ELSE i.phone END,
                                'UTF8')), 'hex')
FROM incidents i
CROSS JOIN LATERAL (
    SELECT 'email' AS channel
    UNION ALL SELECT 'sms' WHERE i.channel IN ('sms', 'whatsapp')
) c
"""

# The follow-up sent to the customer and, for some negative ones, the team's escalation.
LATER_NOTIFICATIONS_SQL = """
INSERT INTO notifications (incident_id, channel, kind, recipient, message, status, attempts,
                           created_at, sent_at, recipient_key)
SELECT id, 'email', k.kind,
       CASE k.kind WHEN 'reminder' THEN left(email, 1) || '***@example.com'
                   ELSE 's***@example.com' END,
       CASE k.kind WHEN 'reminder' THEN 'Your ticket ' || ticket_id || ' is still open.'
                   ELSE '[Escalation] Ticket #' || ticket_id || ' still open' END,
       'sent', 1, created_at + interval '24 hours', created_at + interval '24 hours 1 second',
       CASE k.kind WHEN 'reminder' THEN encode(sha256(convert_to(email, 'UTF8')), 'hex') END
FROM incidents
CROSS JOIN LATERAL (
    SELECT 'reminder' AS kind WHERE reminder_sent
    UNION ALL SELECT 'escalation' WHERE reminder_sent AND sentiment = 'negative'
) k
"""

REMINDERS_SQL = """
INSERT INTO reminders (incident_id, kind, due_at, state, attempts, created_at, updated_at)
SELECT id, 'follow_up', created_at + interval '24 hours',
       CASE WHEN reminder_sent THEN 'sent'
            WHEN status = 'resolved' THEN 'cancelled'
            ELSE 'scheduled' END,
       CASE WHEN reminder_sent THEN 1 ELSE 0 END,
       acknowledged_at, coalesce(resolved_at, acknowledged_at)
FROM incidents
"""

# 10 % of the incidents get 1-3 later messages from the customer.
MESSAGES_SQL = f"""
WITH chosen AS (
    SELECT id, channel, created_at, language, status, resolved_at,
           1 + floor(random() * 3)::int AS count
    FROM incidents WHERE random() < 0.10
), drawn AS (
    SELECT c.*, k, random() AS r_text, random() AS r_sentiment
    FROM chosen c CROSS JOIN LATERAL generate_series(1, c.count) AS k
)
INSERT INTO incident_messages (incident_id, channel, sender, body, attachments, received_at,
                               language, sentiment, polarity, scored_at)
SELECT id, channel, 'customer',
       {
    _filled(
        "($later::text[])[1 + array_position($languages::text[], language) * 4 - 4"
        " + floor(r_text * 4)::int]"
    )
},
       CASE WHEN r_text < 0.2 THEN '[{{"name": "screenshot.png", "content_type": "image/png",
                                     "size": 48213}}]'::jsonb
            ELSE '[]'::jsonb END,
       least(now(), created_at + (interval '1 hour') * (k * (1 + r_sentiment * 20))),
       language,
       CASE WHEN r_sentiment < 0.5 THEN 'negative' WHEN r_sentiment < 0.8 THEN 'neutral'
            ELSE 'positive' END,
       -1 + r_sentiment * 2,
       least(now(), created_at + (interval '1 hour') * (k * (1 + r_sentiment * 20)))
FROM drawn
"""

TRENDS_SQL = """
UPDATE incidents i SET sentiment_trend = (ARRAY['worsening', 'improving', 'steady'])[
    1 + abs(hashtext(i.id::text)) % 3]
WHERE EXISTS (SELECT 1 FROM incident_messages m WHERE m.incident_id = i.id)
"""

# What each service's audit row of an incident says (service, event, outcome, seconds after).
AUDIT_STEPS = (
    ("ingest", "incident.received", "accepted", 0.0),
    ("sentiment", "incident.received", "scored", 0.04),
    ("classifier", "incident.scored", "classified", 0.09),
    ("ticketing", "incident.classified", "ticketed", 0.15),
    ("notifier", "incident.ticketed", "acknowledged", 0.9),
    ("reminder", "incident.acknowledged", "follow-up scheduled", 0.95),
)
AUDIT_SQL = """
INSERT INTO audit_events
    (service, event_name, event_id, incident_id, occurred_at, recorded_at, payload, outcome)
SELECT s.service, s.event_name, md5(s.service || i.id::text)::uuid, i.id,
       i.created_at + s.after * interval '1 second',
       i.created_at + s.after * interval '1 second' + interval '5 ms',
       jsonb_build_object('event_id', md5(s.event_name || i.id::text)::uuid,
                          'incident_id', i.id, 'schema_version', 1, 'trace', '{}'::jsonb,
                          'occurred_at', i.created_at, 'customer_id', i.customer_id,
                          'channel', i.channel, 'message', i.message, 'email', i.email),
       s.outcome
FROM incidents i
CROSS JOIN unnest($services::text[], $events::text[], $outcomes::text[], $afters::float8[])
    AS s(service, event_name, outcome, after)
"""

RESOLVED_AUDIT_SQL = """
INSERT INTO audit_events
    (service, event_name, event_id, incident_id, occurred_at, recorded_at, payload, outcome)
SELECT 'ingest', 'incident.resolved', md5('resolved' || id::text)::uuid, id, resolved_at,
       resolved_at, jsonb_build_object('status', 'resolved', 'by', 'key:support'),
       'resolved by key:support'
FROM incidents WHERE status = 'resolved'
"""

# 1 % of the classified incidents corrected by an agent.
CORRECTIONS_SQL = """
WITH chosen AS (
    SELECT id, classification, created_at,
           ($categories::text[])[1 + floor(random() * 7)::int] AS corrected
    FROM incidents WHERE random() < 0.01
), stored AS (
    INSERT INTO classification_corrections (incident_id, previous, corrected, agent, note,
                                            created_at)
    SELECT id, classification, corrected, 'key:support',
           CASE WHEN random() < 0.5 THEN 'the customer says so in the second message' END,
           created_at + interval '2 hours'
    FROM chosen
    RETURNING incident_id, previous, corrected, created_at
)
INSERT INTO audit_events
    (service, event_name, event_id, incident_id, occurred_at, recorded_at, payload, outcome)
SELECT 'ingest', 'classification.corrected', md5('corrected' || incident_id::text)::uuid,
       incident_id, created_at, created_at,
       jsonb_build_object('previous', previous, 'corrected', corrected, 'by', 'key:support'),
       'classification corrected by key:support'
FROM stored
"""


def _numbered(sql: str, names: list[str]) -> str:
    """``$name`` placeholders as asyncpg's ``$1``…, in the order of ``names``."""
    for i, name in enumerate(names, 1):
        sql = re.sub(rf"\${name}\b", f"${i}", sql)
    return sql


@dataclass
class Fill:
    incidents: int
    seconds: float
    vacuum_seconds: float
    rows: dict[str, int]
    search_share: float

    def lines(self) -> list[str]:
        counts = " ".join(f"{table}={n}" for table, n in self.rows.items())
        return [
            f"fill: {self.incidents} incidents in {self.seconds:.1f} s (set-based SQL), then "
            f"VACUUM ANALYZE {self.vacuum_seconds:.1f} s (autovacuum's work, docs/adr/0043)",
            f"rows: {counts}",
            f"q={SEARCH_WORD} is in {self.search_share:.2%} of the incidents' messages",
        ]


async def fill(database_url: str, incidents: int) -> Fill:
    """``incidents`` incidents of the last 30 days and what the pipeline stores with them."""
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        await conn.execute("SELECT setseed(0.42)")
        values = {
            "count": incidents,
            "customers": max(50, incidents // 5),
            "english": list(ENGLISH),
            "others": list(OTHERS),
            "openers": list(OPENERS),
            "closers": list(CLOSERS),
            "merchants": list(MERCHANTS),
            "categories": list(CATEGORIES),
            "languages": list(LANGUAGES),
            "later": list(LATER),
        }

        async def run(sql: str, **extra: object) -> None:
            given = {**values, **extra}
            names = [name for name in given if re.search(rf"\${name}\b", sql)]
            await conn.execute(_numbered(sql, names), *(given[name] for name in names))

        await run(INCIDENTS_SQL)
        await run(TICKETS_SQL)
        await run(NOTIFICATIONS_SQL)
        await run(LATER_NOTIFICATIONS_SQL)
        await run(REMINDERS_SQL)
        await run(MESSAGES_SQL)
        await run(TRENDS_SQL)
        await run(
            AUDIT_SQL,
            services=[s[0] for s in AUDIT_STEPS],
            events=[s[1] for s in AUDIT_STEPS],
            outcomes=[s[2] for s in AUDIT_STEPS],
            afters=[s[3] for s in AUDIT_STEPS],
        )
        await run(RESOLVED_AUDIT_SQL)
        await run(CORRECTIONS_SQL)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        vacuum_seconds = time.perf_counter() - started
        rows = {}
        for table in (
            "incidents",
            "incident_messages",
            "notifications",
            "reminders",
            "audit_events",
            "local_tickets",
            "classification_corrections",
        ):
            rows[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
        found = await conn.fetchval(
            "SELECT count(*) FROM incidents i WHERE message ILIKE $1 OR EXISTS ("
            " SELECT 1 FROM incident_messages m WHERE m.incident_id = i.id AND m.body ILIKE $1)",
            f"%{SEARCH_WORD}%",
        )
        return Fill(incidents, seconds, vacuum_seconds, rows, found / max(1, incidents))
    finally:
        await conn.close()


@dataclass
class Picks:
    """What the requests ask for: existing incidents and customers."""

    incident_ids: list[str]
    customers: list[str]


async def pick(database_url: str, count: int) -> Picks:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT setseed(0.7)")
        # Customers as operators look them up: those who write often, more often.
        rows = await conn.fetch(
            "SELECT id::text, customer_id FROM incidents ORDER BY random() LIMIT $1", count
        )
        return Picks([r["id"] for r in rows], [r["customer_id"] for r in rows])
    finally:
        await conn.close()


@contextmanager
def console(database_url: str, page_size: int) -> Iterator[str]:
    """The console (uvicorn, as `make up` starts it) on a free loopback port, open (no key
    configured); yields its base URL once it is ready."""
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("INGEST_", "CONSOLE_")) and name != "SECRETS_DIR"
    }
    env.update(
        DATABASE_URL=database_url,
        CONSOLE_PAGE_SIZE=str(page_size),
        ENV="development",
        MIGRATE_ON_START="false",
        PYTHONPATH=str(REPO),
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "services.console.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the console exited:\n{log.read()[-4000:]}")
                try:
                    if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the console was not ready within 60 s")
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The list's filters, as the filter form sends them (every field, "" for any).
FORM = {
    "status": "",
    "category": "",
    "sentiment": "",
    "language": "",
    "review": "",
    "customer": "",
    "q": "",
}


@dataclass
class Endpoint:
    name: str
    # The i-th request's path and query.
    request: Callable[[int], tuple[str, dict[str, str]]]
    times_ms: list[float] = field(default_factory=list)


def list_endpoints(base: httpx.Client, picks: Picks) -> list[Endpoint]:
    def filtered(**chosen: str) -> Callable[[int], tuple[str, dict[str, str]]]:
        return lambda _: ("/incidents", {**FORM, **chosen})

    first = base.get("/incidents", params=FORM)
    first.raise_for_status()
    following = re.search(r'rel="next" href="([^"]+)"', first.text)
    if following is None:
        raise RuntimeError("the list's first page has no link to the next one")
    second = html.unescape(following.group(1))
    customers = picks.customers
    return [
        Endpoint("none", filtered()),
        Endpoint("status=open", filtered(status="open")),
        Endpoint("category=fraud_report", filtered(category="fraud_report")),
        Endpoint("sentiment=negative", filtered(sentiment="negative")),
        Endpoint("language=es", filtered(language="es")),
        Endpoint("review=yes", filtered(review="yes")),
        Endpoint(
            "customer=<existing>",
            lambda i: ("/incidents", {**FORM, "customer": customers[i % len(customers)]}),
        ),
        Endpoint(f"q={SEARCH_WORD}", filtered(q=SEARCH_WORD)),
        Endpoint("page 2 (cursor)", lambda _: (second, {})),
        # A search that finds nothing (or one incident: a reference number) reads every row.
        Endpoint(f"q={MISSING_WORD} (no match)", filtered(q=MISSING_WORD)),
    ]


def timed(client: httpx.Client, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params or None)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
    return elapsed


def p95(times_ms: list[float]) -> float:
    """Nearest rank: the smallest time at least 95 % of the requests took no longer than."""
    ordered = sorted(times_ms)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def p50(times_ms: list[float]) -> float:
    ordered = sorted(times_ms)
    return ordered[max(0, math.ceil(0.5 * len(ordered)) - 1)]


@dataclass
class Measured:
    lists: list[Endpoint]
    incident: Endpoint
    overview: Endpoint | None
    # GET /health/live (no database, no template): what loopback, HTTP and the client add.
    floor: Endpoint


def measure(base_url: str, picks: Picks, requests: int, warmup: int = 20) -> Measured:
    """Every endpoint ``requests`` times, one request at a time, interleaved (each round asks
    every list filter, an incident and the overview once), after ``warmup`` such rounds."""
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as client:
        opened = client.get("/incidents", params=FORM)
        if opened.status_code != 200:
            raise RuntimeError(f"the list answers {opened.status_code}: not in open mode?")
        lists = list_endpoints(client, picks)
        ids = picks.incident_ids
        incident = Endpoint("incident", lambda i: (f"/incidents/{ids[i % len(ids)]}", {}))
        built = client.get("/overview")
        overview = None
        if built.status_code != 404:
            overview = Endpoint("overview", lambda _: ("/overview", {}))
        floor = Endpoint("/health/live", lambda _: ("/health/live", {}))
        endpoints = [*lists, incident, *([overview] if overview else []), floor]
        for i in range(warmup):
            for endpoint in endpoints:
                timed(client, *endpoint.request(requests + i))
        for i in range(requests):
            for endpoint in endpoints:
                endpoint.times_ms.append(timed(client, *endpoint.request(i)))
    return Measured(lists, incident, overview, floor)


def figure(times_ms: list[float]) -> int:
    return math.ceil(p95(times_ms))


def report(measured: Measured) -> list[str]:
    lines = [
        "time per request: the client's wall time over loopback (one keep-alive httpx client, "
        "sequential), nothing subtracted",
        f"harness floor: GET /health/live p50_ms={p50(measured.floor.times_ms):.1f} "
        f"p95_ms={p95(measured.floor.times_ms):.1f} (loopback, HTTP and the client; no query)",
    ]

    def line(endpoint: Endpoint, target: int, what: str) -> str:
        worst = p95(endpoint.times_ms)
        met = "yes" if worst <= target else "NO"
        return (
            f"{what} {endpoint.name}: n={len(endpoint.times_ms)} "
            f"p50_ms={p50(endpoint.times_ms):.1f} p95_ms={worst:.1f} "
            f"max_ms={max(endpoint.times_ms):.1f} target_ms={target} met={met}"
        )

    lines += [line(e, LIST_TARGET_MS, "list") for e in measured.lists]
    lines.append(line(measured.incident, INCIDENT_TARGET_MS, "page"))
    if measured.overview:
        lines.append(line(measured.overview, OVERVIEW_TARGET_MS, "page"))
    else:
        lines.append("page overview: GET /overview answers 404, not built: overview_p95_ms=NA")
    worst = max(measured.lists, key=lambda e: p95(e.times_ms))
    lines.append(f"list: the worst filter is {worst.name}")
    overview = figure(measured.overview.times_ms) if measured.overview else "NA"
    lines.append(
        f"list_p95_ms={figure(worst.times_ms)} "
        f"incident_p95_ms={figure(measured.incident.times_ms)} overview_p95_ms={overview}"
    )
    return lines


def run(
    server_url: str,
    incidents: int,
    requests: int,
    page_size: int = 50,
    out: Callable[[str], None] = print,
) -> list[str]:
    """The whole benchmark on a database of its own (dropped afterwards); its lines, each
    also given to ``out`` as it comes."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        out(line)

    with own_database(server_url, "bench-console") as url:
        say(f"database: {urlsplit(url).path.lstrip('/')} (its own, dropped at the end)")
        filled = asyncio.run(fill(url, incidents))
        for line in filled.lines():
            say(line)
        picks = asyncio.run(pick(url, 500))
        with console(url, page_size) as base:
            say(f"console: {base}, CONSOLE_PAGE_SIZE={page_size}, open mode")
            measured = measure(base, picks, requests)
        for line in report(measured):
            say(line)
    return lines


def main() -> None:
    run(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        int(os.environ.get("BENCH_INCIDENTS", "100000")),
        int(os.environ.get("BENCH_REQUESTS", "200")),
        int(os.environ.get("CONSOLE_PAGE_SIZE", "50")),
        out=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    main()
