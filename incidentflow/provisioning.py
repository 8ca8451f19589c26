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

import asyncio
import os
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
from contracts.topology import DEAD_LETTERS, EVENTS, DelayLevels, retry_routing_key
from incidentflow.messaging import declare_all
from incidentflow.settings import CommonSettings, _unprefixed

DEFAULT_PREFIX = "incidentflow"
MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671
DEAD_LETTER_POLICY = "incidentflow-dead-letters"


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
        DeadLetterLimits.ttl_days,
        ge=1,
        le=3650,
        validation_alias=_unprefixed("DEAD_LETTER_TTL_DAYS"),
    )
    dead_letter_max_length: int = Field(
        DeadLetterLimits.max_length, ge=1, validation_alias=_unprefixed("DEAD_LETTER_MAX_LENGTH")
    )

    @property
    def dead_letter_limits(self) -> DeadLetterLimits:
        return DeadLetterLimits(self.dead_letter_ttl_days, self.dead_letter_max_length)


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
        credentials = _credentials_in(url)
        if credentials.user == unquote(urlsplit(admin_url).username or ""):
            raise ValueError(f"{path} names the administrator's own user")
        return url, credentials
    credentials = Credentials(f"{prefix}_{grants.service}", secrets.token_urlsafe(24))
    url = _with_credentials(admin_url, credentials)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.mkdir(exist_ok=True, mode=0o700)
    # Written whole or not at all: a half-written file would stop every later run.
    partial = path.with_suffix(".partial")
    partial.touch(mode=0o600)
    partial.write_text(url + "\n")
    os.replace(partial, path)
    return url, credentials


def _one_user_each(
    directory: Path, setting: str, admin_url: str, prefix: str
) -> list[tuple[ServiceGrants, str, Credentials]]:
    """Every service's grants, URL and login for ``setting``; two services sharing a user
    would share the last one's grants, so that is refused."""
    logins = [
        (grants, *service_credentials(directory, grants, setting, admin_url, prefix))
        for grants in SERVICE_GRANTS
    ]
    users = [who.user for _, _, who in logins]
    if len(set(users)) != len(users):
        raise ValueError(f"two services' {setting} files name the same user: one user each")
    return logins


# --- Postgres -------------------------------------------------------------------------------


async def grant_database_role(
    conn: asyncpg.Connection, grants: ServiceGrants, who: Credentials
) -> None:
    """Create or update the role, then set its grants from nothing: a grant taken out of
    contracts/grants.py is revoked here too."""
    role = who.user
    found = await conn.fetchrow(
        "SELECT rolsuper OR rolcreaterole OR rolcreatedb AS powerful FROM pg_roles"
        " WHERE rolname = $1",
        role,
    )
    if found is not None and found["powerful"]:
        raise ValueError(f"{role} may create roles or databases: not a service's login")
    # Identifiers and literals quoted by Postgres itself: DDL takes no parameters. ALTER sets
    # only the login and password: a managed Postgres's administrator is no superuser and may
    # not name NOSUPERUSER, and an existing service role has none of those powers (above).
    template = (
        "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)"
        if found is not None
        else "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
        " PASSWORD %L', $1::text, $2::text)"
    )
    await conn.execute(await conn.fetchval(template, role, who.password))
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
        for grants, url, who in _one_user_each(directory, "database_url", admin_url, prefix):
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


def _either(patterns: list[str]) -> str:
    """An anchored alternation of regular expressions; nothing at all when there are none."""
    return "^(" + "|".join(patterns) + ")$" if patterns else "^$"


def broker_permissions(grants: ServiceGrants) -> BrokerPermissions:
    """What one service's user may do, with the topology declared by the administrator
    (DECLARE_TOPOLOGY=false for the services):

    - configure: its own queues (``<service>.…``), and ``incidentflow.events`` (its
      publishes declare it); nothing shared besides: it can neither delete nor purge the delay
      queues or the dead-letter exchange;
    - write: its own queues (binding them), the exchanges it publishes to: events, the dead
      letters, the delay levels (its retries and delayed events);
    - read: its own queues, and the exchanges its queues bind to (events, and the delay exit
      for a service with delayed routes), where topic permissions allow only its own keys.
    """
    own_queues = re.escape(grants.queue_prefix) + r"[a-z0-9.-]+"
    events = re.escape(EVENTS.name)
    delivery = re.escape(DelayLevels.DELIVERY.name)
    levels = re.escape(DelayLevels.PREFIX) + r"\.[0-9]+"
    delayed_routes = [route for route in grants.routes if route.delayed]
    configure = _either([own_queues, events])
    write = _either([own_queues, events, re.escape(DEAD_LETTERS.name), levels])
    read = _either([own_queues, events, *([delivery] if delayed_routes else [])])
    # Through the delay levels: the delay's binary digits, then a retry of one of its own
    # queues, or one of its delayed events; exactly those names, nothing after them.
    retries = [re.escape(retry_routing_key(route.queue_name)) for route in grants.routes]
    through_delays = [*retries, *(re.escape(e.routing_key()) for e in grants.delays)]
    level_write = r"^([01]\.)+(" + "|".join(through_delays) + ")$" if through_delays else "^$"
    topics = {
        EVENTS.name: (
            _alternatives([e.routing_key() for e in grants.publishes]),
            _alternatives([e.routing_key() for e in grants.binds]) if grants.binds else "^$",
        ),
        # Nobody publishes to the delay exit but the delay levels' dead-lettering; a service
        # binds there only its delayed routes.
        DelayLevels.DELIVERY.name: (
            "^$",
            _either([re.escape(route.binding_key) for route in delayed_routes]),
        ),
    }
    for level in range(DelayLevels.LEVELS):
        topics[DelayLevels.exchange(level).name] = (level_write, "^$")
    return BrokerPermissions(configure, write, read, topics)


def management_url(rabbitmq_url: str, configured: str | None = None) -> str:
    """The management API's URL: ``configured``, or port 15672 on the broker's host with the
    broker URL's user and password."""
    if configured:
        return configured
    amqp = urlsplit(rabbitmq_url)
    host = amqp.hostname or "localhost"
    credentials = Credentials(unquote(amqp.username or "guest"), unquote(amqp.password or "guest"))
    # A broker reached over TLS gets its administrator's password over TLS too.
    if amqp.scheme == "amqps":
        return _with_credentials(f"https://{host}:{MANAGEMENT_TLS_PORT}/", credentials)
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

    def add_vhost(self, administrator: str) -> None:
        """Create this vhost and give ``administrator`` every permission on it."""
        self._put(f"/vhosts/{self._vhost}", {})
        self._put(
            f"/permissions/{self._vhost}/{quote(administrator, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self) -> None:
        self._client.delete(f"/vhosts/{self._vhost}")

    def queues(self) -> list[dict[str, Any]]:
        """Every queue of this vhost as the broker reports it (name, counts, consumers)."""
        response = self._client.get(f"/queues/{self._vhost}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


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
    # The shared topology is the administrator's: the services' users may not declare it.
    asyncio.run(declare_all(admin_url))
    with BrokerAdmin(api_url, vhost_of(admin_url)) as admin:
        admin.limit_dead_letters(limits)
        for grants, url, who in _one_user_each(directory, "rabbitmq_url", admin_url, prefix):
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
