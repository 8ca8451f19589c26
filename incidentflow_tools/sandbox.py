"""A RabbitMQ vhost, a Postgres database and loopback ports of one's own.

Tests, benchmarks and the chaos run use these, so they never touch a running `make up` stack.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from incidentflow.db import migrate
from incidentflow.provisioning import (
    BrokerAdmin,
    drop_broker_users,
    drop_database_roles,
    management_url,
    provision_broker,
    provision_database,
)
from incidentflow_tools.stack import REPO_ROOT, Stack


def broker_management_url(url: str) -> str:
    """The management API of the broker ``url`` names: RABBITMQ_MANAGEMENT_URL when set (the
    project's own servers answer on a port of their own), else port 15672 on its host."""
    return management_url(url, os.environ.get("RABBITMQ_MANAGEMENT_URL"))


@contextmanager
def own_vhost(url: str, label: str = "test") -> Iterator[str]:
    """``url`` on a new vhost, made and deleted through the broker's management API."""
    vhost = f"incidentflow-{label}-{uuid.uuid4().hex[:8]}"
    with BrokerAdmin(broker_management_url(url), vhost) as admin:
        try:
            admin.add_vhost(unquote(urlsplit(url).username or "guest"))
            yield urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))
        finally:
            admin.delete_vhost()


@contextmanager
def own_database(url: str, label: str = "test") -> Iterator[str]:
    """A fresh, migrated database beside the one ``url`` names; dropped afterwards."""
    name = f"incidentflow_{label}_{uuid.uuid4().hex[:8]}"
    isolated = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    asyncio.run(migrate(isolated))
    try:
        yield isolated
    finally:
        asyncio.run(drop_database(isolated))


async def drop_database(url: str) -> None:
    parts = urlsplit(url)
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def service_logins(rabbitmq_url: str, database_url: str, directory: Path) -> Iterator[Path]:
    """Each service's own Postgres role and RabbitMQ user on this database and vhost, as
    ``incidentflow provision-roles`` makes them (credentials under ``directory``); dropped
    afterwards. Their names carry a prefix of their own: roles and users are per server, and
    other sandboxes use theirs meanwhile."""
    prefix = f"ift{uuid.uuid4().hex[:8]}"
    api = broker_management_url(rabbitmq_url)
    try:
        asyncio.run(provision_database(database_url, directory, prefix))
        provision_broker(rabbitmq_url, api, directory, prefix)
        yield directory
    finally:
        try:
            drop_broker_users(api, prefix)
        finally:
            asyncio.run(drop_database_roles(database_url, prefix))


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports after it, below the ephemeral range.

    Ports the kernel hands out for outgoing connections (the ephemeral range) can be taken by
    any client between our check and the server's bind; a busy test run once lost a service
    to that. Below the range only servers bind.
    """
    low, _ = _ephemeral_range()
    ceiling = min(low, 65535) - size
    for _ in range(200):
        base = random.randrange(10_000, max(ceiling, 10_001))
        if all(_bindable(port) for port in range(base, base + size)):
            return base
    raise RuntimeError("no free block of ports")


def free_port() -> int:
    return free_port_block(1)


# The command that administers the servers this run uses (scripts/servers.sh for the project's
# own; scripts/ensure-services.sh writes it to var/services.env). Never a host command: the
# machine's own servers are not the ones under test.
SERVERS_CTL = "INCIDENTFLOW_SERVERS_CTL"


def servers_ctl() -> str | None:
    return os.environ.get(SERVERS_CTL) or None


def _administer(action: str, server: str) -> None:
    ctl = servers_ctl()
    if ctl is None:
        raise RuntimeError(f"{SERVERS_CTL} is not set: no command administers these servers")
    subprocess.run([ctl, action, server], check=True, timeout=180)


def restart_rabbitmq() -> None:
    """Restart the broker's application: every connection drops, quorum queues recover from
    their logs on disk (the Erlang VM stays up, so it is back in seconds)."""
    _administer("restart", "rabbitmq")


def restart_postgres() -> None:
    _administer("restart", "postgres")


def kill_rabbitmq() -> None:
    """kill -9 every process of the broker, then start it again: crash recovery."""
    _administer("kill", "rabbitmq")


def kill_postgres() -> None:
    _administer("kill", "postgres")


@contextmanager
def isolated_stack(
    rabbitmq_url: str,
    database_url: str,
    label: str,
    env: Mapping[str, str],
    *,
    mail_in_memory: bool = False,
) -> Iterator[tuple[Stack, str]]:
    """The whole system, not started yet, on a vhost, a database, ports and a var directory of
    its own (benchmarks and the chaos run), each service with its own login as deployed;
    yields the stack and its database URL (the owner's).

    The var directory is made under the repository's var/, where `make up` keeps its files,
    not under /tmp: on this project's VMs creating a file below /tmp costs ~0.7 ms of CPU
    against ~0.05 ms elsewhere on the same disk, and the dev inbox creates one per mail
    (docs/performance.md).

    ``mail_in_memory``: the dev inbox keeps its mails on tmpfs (/dev/shm) where there is
    one. It stands for the mail provider, whose disk is not this machine's; on this
    machine's, creating a file waits for the database's writes to the journal, and the
    inbox, one thread, holds every session meanwhile (the benchmark's sink)."""
    parent = REPO_ROOT / "var"
    parent.mkdir(exist_ok=True)
    memory = Path("/dev/shm")
    with (
        own_vhost(rabbitmq_url, label) as vhost_url,
        own_database(database_url, label) as own_url,
        tempfile.TemporaryDirectory(prefix=f"isolated-{label}-", dir=parent) as var,
        tempfile.TemporaryDirectory(
            prefix=f"incidentflow-{label}-mail-",
            dir=memory if mail_in_memory and memory.is_dir() else var,
        ) as mail,
        service_logins(vhost_url, own_url, Path(var) / "credentials") as credentials,
    ):
        stack = Stack(
            var_dir=Path(var),
            base_port=free_port_block(6),
            mail_port=free_port(),
            intake_smtp_port=None,
            console_port=None,
            env={"RABBITMQ_URL": vhost_url, "DATABASE_URL": own_url, **env},
            mail_root=Path(mail),
        )
        stack.use_credentials(credentials)
        yield stack, own_url


SAMPLE_MESSAGES = (
    "I was charged twice for order {n}, please refund the duplicate!",
    "My card payment {n} failed but the money left my account",
    "Someone I don't know used my card, transaction {n} is fraud",
    "I want a refund for purchase {n}, it never arrived",
    "My account is locked after payment {n}, I cannot log in",
    "My statement shows payment {n} with the wrong amount",
    "Thank you for the quick help with payment {n}, all good now",
)


def sample_incident(prefix: str, n: int) -> dict[str, str]:
    """The body of the load generators' request n: each kind of incident in turn, and one
    customer per request, so per-customer limits and duplicate linking stay out of it."""
    return {
        "customer_id": f"{prefix}-{n}",
        "channel": "email",
        "message": SAMPLE_MESSAGES[n % len(SAMPLE_MESSAGES)].format(n=n),
        "email": f"customer{n}@example.com",
    }
