"""One Postgres role and one RabbitMQ user per service, with only the grants it needs.

``incidentflow provision-roles`` runs this as the schema owner and the broker's administrator,
after the migrations (contracts/grants.py says what each service gets; docs/adr/0049 why).
Each service's credentials are two files, ``<dir>/<service>/database_url`` and
``rabbitmq_url``, named like the settings so that ``SECRETS_DIR=<dir>/<service>`` is all a
service needs. A file that exists says which user and password to create (a Kubernetes Secret
mounted there, a deployer's choice); a missing one is written with a new random password,
so running it again changes nothing that works.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import httpx
from pydantic import Field

from contracts.grants import SERVICE_GRANTS, ServiceGrants
from contracts.topology import DEAD_LETTERS, EVENTS, DelayLevels
from incidentflow.settings import CommonSettings, _unprefixed

DEFAULT_PREFIX = "incidentflow"
MANAGEMENT_PORT = 15672
DEAD_LETTER_POLICY = "incidentflow-dead-letters"


class ProvisionSettings(CommonSettings):
    """The administrators' connections (RABBITMQ_URL and DATABASE_URL: the broker's
    administrator and the schema owner) and the broker's HTTP API."""

    # Where RabbitMQ's management API answers; unset: port 15672 on RABBITMQ_URL's host,
    # with RABBITMQ_URL's user and password.
    rabbitmq_management_url: str | None = Field(
        None, validation_alias=_unprefixed("RABBITMQ_MANAGEMENT_URL")
    )
    # Dead letters hold whole events (addresses, messages): kept this long at most, and at
    # most this many per queue (beyond it the broker keeps the message in its work queue).
    dead_letter_ttl_days: int = Field(
        30, ge=1, le=3650, validation_alias=_unprefixed("DEAD_LETTER_TTL_DAYS")
    )
    dead_letter_max_length: int = Field(
        100_000, ge=1, validation_alias=_unprefixed("DEAD_LETTER_MAX_LENGTH")
    )


@dataclass(frozen=True)
class DeadLetterLimits:
    ttl_days: int = 30
    max_length: int = 100_000

    def policy(self) -> dict[str, object]:
        """A broker policy on every dead-letter queue (a policy, not queue arguments: it
        changes without redeclaring the queues)."""
        return {
            "pattern": r"^[a-z]+\.[a-z-]+\.dlq$",
            "apply-to": "queues",
            "priority": 10,
            "definition": {
                "message-ttl": self.ttl_days * 86_400_000,
                "max-length": self.max_length,
            },
        }


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


def _with_credentials(url: str, credentials: Credentials) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{quote(credentials.user, safe='')}:{quote(credentials.password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _credentials_in(url: str) -> Credentials:
    parts = urlsplit(url)
    if not parts.username or not parts.password:
        raise ValueError("a credentials file holds a URL without a user or password")
    return Credentials(unquote(parts.username), unquote(parts.password))


def service_credentials(
    directory: Path, grants: ServiceGrants, setting: str, admin_url: str, prefix: str
) -> tuple[str, Credentials]:
    """The service's URL for ``setting`` (``database_url``, ``rabbitmq_url``) and who it logs
    in as: read from its file, or made from ``admin_url`` and written there (mode 0600)."""
    folder = directory / grants.service
    path = folder / setting
    if path.exists():
        url = path.read_text().strip()
        return url, _credentials_in(url)
    credentials = Credentials(f"{prefix}_{grants.service}", secrets.token_urlsafe(24))
    url = _with_credentials(admin_url, credentials)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(url + "\n")
    return url, credentials


# --- Postgres -------------------------------------------------------------------------------


async def grant_database_role(
    conn: asyncpg.Connection, grants: ServiceGrants, who: Credentials
) -> None:
    """Create or update the role, then set its grants from nothing: a grant taken out of
    contracts/grants.py is revoked here too."""
    role = who.user
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    # Identifiers and literals quoted by Postgres itself: DDL takes no parameters.
    await conn.execute(
        await conn.fetchval(
            "SELECT format('%s ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',"
            " $1::text, $2::text, $3::text)",
            verb,
            role,
            who.password,
        )
    )
    quoted = await conn.fetchval("SELECT quote_ident($1)", role)
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}",
        f"GRANT CONNECT ON DATABASE {database} TO {quoted}",
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
    ]
    statements += [
        f"GRANT {privileges} ON {table} TO {quoted}" for table, privileges in grants.tables.items()
    ]
    statements += [
        f"GRANT UPDATE ({', '.join(columns)}) ON {table} TO {quoted}"
        for table, columns in grants.updates.items()
    ]
    statements += [
        f"GRANT USAGE ON SEQUENCE {sequence} TO {quoted}" for sequence in grants.sequences
    ]
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)


async def provision_database(
    admin_url: str, directory: Path, prefix: str = DEFAULT_PREFIX
) -> dict[str, str]:
    """Every service's role in the database ``admin_url`` names; service → its URL."""
    urls: dict[str, str] = {}
    conn = await asyncpg.connect(admin_url)
    try:
        for grants in SERVICE_GRANTS:
            url, who = service_credentials(directory, grants, "database_url", admin_url, prefix)
            await grant_database_role(conn, grants, who)
            urls[grants.service] = url
    finally:
        await conn.close()
    return urls


# --- RabbitMQ -------------------------------------------------------------------------------


def _alternatives(names: list[str]) -> str:
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


@dataclass(frozen=True)
class BrokerPermissions:
    """A service's vhost permissions and its topic permissions per exchange."""

    configure: str
    write: str
    read: str
    # exchange → (write, read) patterns over routing keys
    topics: dict[str, tuple[str, str]]


def broker_permissions(grants: ServiceGrants) -> BrokerPermissions:
    """Its own queues (``<service>.…`` and their DLQs), the events and dead-letter exchanges,
    the delay levels it retries through; on the topic exchanges, only the routing keys of the
    events it publishes and its own retries."""
    own = re.escape(grants.queue_prefix) + r"[a-z0-9.-]+"
    shared = [EVENTS.name, DEAD_LETTERS.name, DelayLevels.DELIVERY.name]
    resources = (
        "^("
        + "|".join(
            [*(re.escape(n) for n in shared), re.escape(DelayLevels.PREFIX) + r"\.[0-9]+", own]
        )
        + ")$"
    )
    published = _alternatives([event.routing_key() for event in grants.publishes])
    bound = _alternatives([event.routing_key() for event in grants.binds]) if grants.binds else "^$"
    # Through the delay levels: the delay's binary digits, then its own retries or its
    # delayed events.
    delayed = [re.escape("retry.") + own, *(re.escape(e.routing_key()) for e in grants.delays)]
    through_delays = r"^([01]\.)+(" + "|".join(delayed) + ")$"
    topics = {EVENTS.name: (published, bound)}
    for level in range(DelayLevels.LEVELS):
        topics[DelayLevels.exchange(level).name] = (through_delays, ".*")
    return BrokerPermissions(resources, resources, resources, topics)


def management_url(rabbitmq_url: str, configured: str | None = None) -> str:
    """The management API's URL: ``configured``, or port 15672 on the broker's host with the
    broker URL's user and password."""
    if configured:
        return configured
    amqp = urlsplit(rabbitmq_url)
    host = amqp.hostname or "localhost"
    credentials = Credentials(unquote(amqp.username or "guest"), unquote(amqp.password or "guest"))
    return _with_credentials(f"http://{host}:{MANAGEMENT_PORT}/", credentials)


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class BrokerAdmin:
    """RabbitMQ's management HTTP API: users and their permissions on one vhost."""

    def __init__(self, api_url: str, vhost: str) -> None:
        parts = urlsplit(api_url)
        netloc = parts.netloc.rpartition("@")[2]  # the credentials go in the auth header
        self._client = httpx.Client(
            base_url=urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + "/api",
            auth=(unquote(parts.username or "guest"), unquote(parts.password or "guest")),
            timeout=30,
        )
        self._vhost = quote(vhost, safe="")

    def __enter__(self) -> BrokerAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def _put(self, path: str, body: dict[str, object]) -> None:
        response = self._client.put(path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(
                f"RabbitMQ's management API refused PUT {path}: "
                f"{response.status_code} {response.text[:200]}"
            )

    def grant(self, who: Credentials, permissions: BrokerPermissions) -> None:
        user = quote(who.user, safe="")
        self._put(f"/users/{user}", {"password": who.password, "tags": ""})
        self._put(
            f"/permissions/{self._vhost}/{user}",
            {
                "configure": permissions.configure,
                "write": permissions.write,
                "read": permissions.read,
            },
        )
        for exchange, (write, read) in permissions.topics.items():
            self._put(
                f"/topic-permissions/{self._vhost}/{user}",
                {"exchange": exchange, "write": write, "read": read},
            )

    def limit_dead_letters(self, limits: DeadLetterLimits) -> None:
        self._put(f"/policies/{self._vhost}/{DEAD_LETTER_POLICY}", limits.policy())

    def queue(self, name: str) -> dict[str, Any]:
        """What the broker reports of one queue (its policy, arguments, counts)."""
        response = self._client.get(f"/queues/{self._vhost}/{quote(name, safe='')}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def delete_user(self, user: str) -> None:
        self._client.delete(f"/users/{quote(user, safe='')}")


def provision_broker(
    admin_url: str,
    api_url: str,
    directory: Path,
    prefix: str = DEFAULT_PREFIX,
    limits: DeadLetterLimits = DeadLetterLimits(),
) -> dict[str, str]:
    """Every service's user on the vhost ``admin_url`` names, and the dead-letter limits;
    service → its URL."""
    urls: dict[str, str] = {}
    with BrokerAdmin(api_url, vhost_of(admin_url)) as admin:
        admin.limit_dead_letters(limits)
        for grants in SERVICE_GRANTS:
            url, who = service_credentials(directory, grants, "rabbitmq_url", admin_url, prefix)
            admin.grant(who, broker_permissions(grants))
            urls[grants.service] = url
    return urls


async def drop_database_roles(admin_url: str, prefix: str) -> None:
    """Take the prefix's service roles out of the database ``admin_url`` names and drop
    them (sandboxes: a role granted in another database stays)."""
    conn = await asyncpg.connect(admin_url)
    try:
        for grants in SERVICE_GRANTS:
            role = f"{prefix}_{grants.service}"
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                continue
            quoted = await conn.fetchval("SELECT quote_ident($1)", role)
            await conn.execute(f"DROP OWNED BY {quoted}")
            await conn.execute(f"DROP ROLE {quoted}")
    finally:
        await conn.close()


def drop_broker_users(api_url: str, prefix: str) -> None:
    with BrokerAdmin(api_url, "/") as admin:
        for grants in SERVICE_GRANTS:
            admin.delete_user(f"{prefix}_{grants.service}")
