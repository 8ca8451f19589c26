"""make deploy-check: the real image, built and run the way deploy/compose.yaml runs it.

1. A base image: the Dockerfile's PYTHON_IMAGE from a registry when one answers, else one made
   here from a Debian rootfs (debootstrap) with the same Python minor version.
2. `podman build` of deploy/Dockerfile (chroot isolation: no container engine needed).
3. The one-shot migrate and provision-roles, then the six services, as containers with the
   command, environment, volumes and hardening of their compose service (read-only root,
   non-root, every capability dropped, no new privileges), against the servers of
   var/services.env (scripts/ensure-services.sh), on a vhost and database of their own.
4. The README's three messages posted with REMINDER_DELAY_SECONDS=5: three 201 answers, three
   acknowledgement mails and the follow-up(s) at an SMTP sink on loopback.

Containers share the host's network (podman's bridge would rewrite the host's firewall), so
what compose reaches by service name is reached on loopback: the only changes to compose's
values are those addresses, and each service's port. Everything started is removed at the end.

Last line: image=<name:tag> size_mb=N services_ready=6 incidents=3 mails=4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from incidentflow.provisioning import drop_broker_users, drop_database_roles  # noqa: E402
from incidentflow_tools.mailbox import start_mailbox  # noqa: E402
from incidentflow_tools.sandbox import (  # noqa: E402
    broker_management_url,
    drop_database,
    free_port,
    free_port_block,
    own_vhost,
)

COMPOSE = REPO / "deploy" / "compose.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
IMAGE = "localhost/incidentflow:deploy-check"
SERVICES = ("ingest", "sentiment", "classifier", "ticketing", "notifier", "reminder")
ONE_SHOTS = ("migrate", "provision-roles")
# The README's example messages (the design document's three tests).
MESSAGES = (
    "I am FURIOUS! I was charged TWICE! This is absolutely ridiculous!",
    "I noticed duplicate charges. Please investigate.",
    "Thank you for fixing this so quickly! Excellent service!",
)
PODMAN = ["podman", "--runtime", "runc"]
# runc here refuses the machine's default limits; these are explicit and ample.
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
WORK = REPO / "var" / "deploy-check"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# What the official python image sets and a bare rootfs lacks; pip is told where the bundle
# is (the pip that ensurepip brings does not read the system's store).
IMAGE_CONFIG = [
    "--change",
    "ENV LANG=C.UTF-8",
    "--change",
    f"ENV PIP_CERT={HOST_CA_BUNDLE}",
    "--change",
    'CMD ["python3"]',
]


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, **kwargs)


# --- compose file -------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default}, and $$ for a literal $."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        if operator == ":-":
            return variables.get(name) or default
        if operator == "-":
            return variables.get(name, default)
        return variables.get(name, "")

    return _VARIABLE.sub(one, value)


def compose_services(variables: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The compose file's services, anchors merged (YAML `<<`), variables interpolated."""

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return interpolate(node, variables)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        return node

    return walk(yaml.safe_load(COMPOSE.read_text()))["services"]  # type: ignore[no-any-return]


# --- image --------------------------------------------------------------------------------


def python_image() -> str:
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if not found:
        raise SystemExit("deploy/Dockerfile names no PYTHON_IMAGE")
    return found.group(1)


def image_exists(name: str) -> bool:
    return subprocess.run([*PODMAN, "image", "exists", name], check=False).returncode == 0


def base_image() -> str:
    """The Dockerfile's base from a registry, else a local one with the same Python minor."""
    upstream = python_image()  # python:3.11.14-slim-bookworm
    minor = re.match(r"python:(\d+\.\d+)", upstream)
    suite = re.search(r"-(bookworm|trixie)$", upstream)
    if not minor or not suite:
        raise SystemExit(f"cannot tell the Python version and Debian suite of {upstream}")
    if image_exists(upstream):
        return upstream
    try:
        pulled = subprocess.run(
            [*PODMAN, "pull", "-q", f"docker.io/library/{upstream}"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if pulled.returncode == 0:
            return upstream
    except subprocess.TimeoutExpired:
        pass  # a registry that does not answer: as good as none
    local = f"localhost/incidentflow-base:python{minor.group(1)}-{suite.group(1)}"
    if not image_exists(local):
        log(f"no registry answers for {upstream}: making {local} from a Debian rootfs")
        make_base_image(local, suite.group(1), minor.group(1))
    return local


def make_base_image(name: str, suite: str, minor: str) -> None:
    rootfs = WORK / "base-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python-is-python3,ca-certificates",
            suite,
            str(rootfs),
            os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        ],
        stdout=subprocess.DEVNULL,
    )
    version = run(
        ["chroot", str(rootfs), "python3", "--version"], capture_output=True
    ).stdout.split()[1]
    if not version.startswith(minor + "."):
        raise SystemExit(f"Debian {suite} has Python {version}, the image tag names {minor}")
    # This machine's CA bundle: where a proxy inspects TLS, pip in the build trusts it too.
    shutil.copyfile(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"))
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run(
        [*PODMAN, "import", *IMAGE_CONFIG, "-", name],
        stdin=tar.stdout,
        stdout=subprocess.DEVNULL,
    )
    tar.wait()
    shutil.rmtree(rootfs)


def build(base: str) -> int:
    """Builds the image; its size in MB."""
    log(f"building {IMAGE} on {base}")
    with (WORK / "build.log").open("w") as build_log:
        built = subprocess.run(
            [
                *PODMAN,
                "build",
                "--isolation",
                "chroot",
                "--format",  # Docker's image format keeps the HEALTHCHECK (OCI's has none)
                "docker",
                "--network",
                "host",
                "-f",
                str(DOCKERFILE),
                "--build-arg",
                f"PYTHON_IMAGE={base}",
                "-t",
                IMAGE,
                str(REPO),
            ],
            stdout=build_log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if built.returncode:
        print((WORK / "build.log").read_text()[-4000:])
        raise SystemExit("podman build failed (var/deploy-check/build.log)")
    size = run([*PODMAN, "image", "inspect", "--format", "{{.Size}}", IMAGE], capture_output=True)
    return round(int(size.stdout.strip()) / 1_000_000)


# --- containers ---------------------------------------------------------------------------


class Servers:
    """What compose reaches by service name (`@rabbitmq:5672/`, `@rabbitmq:15672/`,
    `@postgres:5432/`), readdressed to the run's servers, on the check's own vhost."""

    def __init__(self, vhost_url: str, management_url: str, database_url: str) -> None:
        self.addresses = {
            "@rabbitmq:5672/": _at(vhost_url, with_path=True),
            "@rabbitmq:15672/": _at(management_url),
            "@postgres:5432/": _at(database_url),
        }

    def readdress(self, value: str) -> str:
        for compose_address, address in self.addresses.items():
            value = value.replace(compose_address, address)
        return value


def _at(url: str, *, with_path: bool = False) -> str:
    parts = urlsplit(url)
    return f"@{parts.hostname}:{parts.port}/" + (parts.path.lstrip("/") if with_path else "")


def volume_arguments(volumes: list[Any], named: Mapping[str, Path]) -> Iterator[str]:
    """compose's volume entries as podman options; a named volume is a folder of the run's."""
    for volume in volumes:
        if isinstance(volume, str):
            name, target = volume.split(":", 1)
            yield from ("-v", f"{named[name]}:{target}")
            continue
        subpath = (volume.get("volume") or {}).get("subpath")
        source = named[volume["source"]] / subpath if subpath else named[volume["source"]]
        options = ",ro" if volume.get("read_only") else ""
        yield from ("--mount", f"type=bind,source={source},target={volume['target']}{options}")


def container_arguments(name: str, service: dict[str, Any], named: Mapping[str, Path]) -> list[str]:
    # The check polls /health/ready itself: podman's health timers need systemd.
    arguments = ["--name", f"incidentflow-check-{name}", "--network", "host", "--no-healthcheck"]
    arguments += LIMITS
    if service.get("read_only"):
        arguments.append("--read-only")
    for path in service.get("tmpfs", []):
        arguments += ["--tmpfs", path]
    for capability in service.get("cap_drop", []):
        arguments += ["--cap-drop", capability]
    for option in service.get("security_opt", []):
        arguments += ["--security-opt", option.replace(":true", "")]
    arguments += list(volume_arguments(service.get("volumes", []), named))
    return arguments


def environment(service: dict[str, Any], servers: Servers, extra: Mapping[str, str]) -> list[str]:
    values = {key: servers.readdress(str(value)) for key, value in service["environment"].items()}
    values.update(extra)
    return [f"--env={key}={value}" for key, value in values.items()]


def served_on(command: list[str], port: int) -> list[str]:
    """compose's `--host 0.0.0.0 --port 8000` → loopback and a port of its own (shared network)."""
    replaced = list(command)
    replaced[replaced.index("--port") + 1] = str(port)
    replaced[replaced.index("--host") + 1] = "127.0.0.1"
    return replaced


def wait_ready(ports: Mapping[str, int], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    ready: set[str] = set()
    while time.monotonic() < deadline and len(ready) < len(ports):
        for name, port in ports.items():
            if name in ready:
                continue
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                    ready.add(name)
                    log(f"{name} ready on port {port}")
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    return len(ready)


@contextmanager
def containers() -> Iterator[list[str]]:
    """Names of the containers started inside; all removed on the way out."""
    started: list[str] = []
    try:
        yield started
    finally:
        for name in started:
            subprocess.run([*PODMAN, "rm", "-f", "-t", "5", name], capture_output=True, check=False)


def post_messages(port: int) -> int:
    """The README's messages; how many were answered 201 (the pipeline finished)."""
    created = 0
    for message in MESSAGES:
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/incidents",
            json={
                "customer_id": "99876",
                "channel": "email",
                "email": "test@example.com",
                "message": message,
            },
            timeout=30,
        )
        log(f"POST /api/incidents -> {response.status_code} {response.text[:160]}")
        created += response.status_code == 201
    return created


async def settled(database_url: str, mail_dir: Path) -> bool:
    """Every follow-up due has fired, and every email the notifier recorded as sent is in the
    sink (and nothing more)."""
    conn = await asyncpg.connect(database_url)
    try:
        pending = await conn.fetchval(
            "SELECT count(*) FROM reminders WHERE state = 'scheduled' AND due_at < now() + "
            "interval '1 hour'"
        )
        unsent = await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'queued'")
        sent = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE channel = 'email' AND status = 'sent'"
        )
    finally:
        await conn.close()
    return bool(pending == 0 and unsent == 0 and sent == len(list(mail_dir.glob("*.eml"))))


def wait_settled(database_url: str, mail_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(settled(database_url, mail_dir)):
            return
        time.sleep(0.5)
    log("the follow-ups and mails did not settle in time")


def drop_roles(database_url: str, management_url: str, prefix: str) -> None:
    try:
        drop_broker_users(management_url, prefix)
    finally:
        asyncio.run(drop_database_roles(database_url, prefix))


def run_one_shot(name: str, service: dict[str, Any], arguments: list[str]) -> None:
    log(f"{name}: {' '.join(service['command'])}")
    result = subprocess.run(
        [*PODMAN, "run", "--rm", "--replace", *arguments, IMAGE, *service["command"]],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"{name} failed")


def check(rabbitmq_url: str, management_url: str, database_url: str, reminder_s: int) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    size_mb = build(base_image())
    label = uuid.uuid4().hex[:8]
    database = f"incidentflow_deploy_check_{label}"
    own_database_url = urlunsplit(urlsplit(database_url)._replace(path="/" + database))
    prefix = f"ifcheck{label}"  # the roles and users provision-roles makes for this run
    mail_dir = WORK / f"mail-{label}"
    smtp_port = free_port()
    admin = urlsplit(rabbitmq_url)
    owner = urlsplit(database_url)
    variables = {
        "RABBITMQ_DEFAULT_USER": admin.username or "guest",
        "RABBITMQ_DEFAULT_PASS": admin.password or "guest",
        "POSTGRES_USER": owner.username or "postgres",
        "POSTGRES_PASSWORD": owner.password or "",
        "POSTGRES_DB": database,
        "REMINDER_DELAY_SECONDS": str(reminder_s),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
    }
    services = compose_services(variables)
    with ExitStack() as stack:
        vhost_url = stack.enter_context(own_vhost(rabbitmq_url, "deploy-check"))
        servers = Servers(vhost_url, management_url, database_url)
        # Undone last to first: the database goes before the roles that own objects in it.
        stack.callback(drop_roles, database_url, management_url, prefix)
        stack.callback(lambda: asyncio.run(drop_database(own_database_url)))
        stack.callback(shutil.rmtree, mail_dir, True)  # after the mailbox stops
        mailbox = start_mailbox(mail_dir, port=smtp_port)
        stack.callback(mailbox.stop)
        volumes_dir = WORK / f"volumes-{label}"
        stack.callback(shutil.rmtree, volumes_dir, True)
        named = {name: volumes_dir / name for name in ("credentials", "notifier-journal")}
        for path in named.values():
            path.mkdir(parents=True)
            os.chown(path, 10001, 10001)  # the image's user owns its volumes, as Docker's do
        for name in ONE_SHOTS:
            service = services[name]
            env = environment(service, servers, {"PROVISION_ROLE_PREFIX": prefix})
            run_one_shot(name, service, [*container_arguments(name, service, named), *env])
        started = stack.enter_context(containers())
        base_port = free_port_block(len(SERVICES) + 1)
        ports = {name: base_port + i for i, name in enumerate(SERVICES)}
        for name in SERVICES:
            service = services[name]
            # Shared network: ingest's mail listener needs a port of its own too.
            extra = {"INTAKE_SMTP_PORT": str(base_port + len(SERVICES))} if name == "ingest" else {}
            # Named before it runs: a container made but not started is removed as well.
            started.append(f"incidentflow-check-{name}")
            run(
                [
                    *PODMAN,
                    "run",
                    "-d",
                    "--replace",
                    *container_arguments(name, service, named),
                    *environment(service, servers, extra),
                    IMAGE,
                    *served_on(service["command"], ports[name]),
                ],
                capture_output=True,
            )
        ready = wait_ready(ports, 180)
        incidents = post_messages(ports["ingest"]) if ready == len(SERVICES) else 0
        wait_settled(own_database_url, mail_dir, reminder_s + 90)
        mails = len(list(mail_dir.glob("*.eml")))
        if ready < len(SERVICES):
            for name in started:
                logs = subprocess.run(
                    [*PODMAN, "logs", "--tail", "20", name],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                print(f"--- {name}\n{logs.stdout}{logs.stderr}")
    return (
        f"image={IMAGE.removeprefix('localhost/')} size_mb={size_mb} "
        f"services_ready={ready} incidents={incidents} mails={mails}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminder-seconds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("podman") is None:
        raise SystemExit("podman is needed (apt-get install podman buildah runc)")
    rabbitmq_url = os.environ["RABBITMQ_URL"]
    print(
        check(
            rabbitmq_url,
            broker_management_url(rabbitmq_url),
            os.environ["DATABASE_URL"],
            args.reminder_seconds,
        )
    )


if __name__ == "__main__":
    main()
