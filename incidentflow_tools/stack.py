"""Runs the whole system as local processes: the six services and the dev mail inbox.

``make up`` / ``make down`` and the end-to-end tests use this, so both start it the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]

# Service name → ASGI app; ports are base_port + position (ingest on base_port).
SERVICES: dict[str, str] = {
    "ingest": "services.ingest.app:app",
    "sentiment": "services.sentiment.app:app",
    "classifier": "services.classifier.app:app",
    "ticketing": "services.ticketing.app:app",
    "notifier": "services.notifier.app:app",
    "reminder": "services.reminder.app:app",
}
# Not a step of the pipeline: the support team's pages (services/console/).
CONSOLE_APP = "services.console.app:app"


@dataclass
class Stack:
    var_dir: Path = REPO_ROOT / "var"
    base_port: int = 8000
    mail_port: int = 1025
    # Ingest's SMTP listener for mail in (INTAKE_SMTP_PORT); None: none.
    intake_smtp_port: int | None = 2525
    # The support console (CONSOLE_PORT); None: not started.
    console_port: int | None = 8010
    env: dict[str, str] = field(default_factory=dict)
    # Where the dev inbox keeps mails; var_dir/mail unless set.
    mail_root: Path | None = None
    # One service's own settings over ``env``: its database and broker logins.
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def use_credentials(self, directory: Path) -> None:
        """Each service logs in as its own user: ``directory/<service>/database_url`` and
        ``rabbitmq_url``, written by ``incidentflow provision-roles``. A service without
        schema rights cannot migrate, nor declare the shared broker topology, so none tries
        (provision-roles did both's part)."""
        for name in SERVICES:
            own = directory / name
            self.service_env[name] = {
                "DATABASE_URL": (own / "database_url").read_text().strip(),
                "RABBITMQ_URL": (own / "rabbitmq_url").read_text().strip(),
                "MIGRATE_ON_START": "false",
                "DECLARE_TOPOLOGY": "false",
            }

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def mail_dir(self) -> Path:
        return self.mail_root or self.var_dir / "mail"

    def port(self, service: str) -> int:
        return self.base_port + list(SERVICES).index(service)

    def url(self, service: str) -> str:
        if service == "console":
            return f"http://127.0.0.1:{self.console_port}"
        return f"http://127.0.0.1:{self.port(service)}"

    def ready_url(self, service: str) -> str:
        return self.url(service) + "/health/ready"

    def commands(self, with_mailbox: bool) -> dict[str, list[str]]:
        python = sys.executable
        commands = {
            name: [
                python,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port(name)),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "20",
            ]
            for name, app in SERVICES.items()
        }
        if self.console_port is not None:
            commands["console"] = [
                python,
                "-m",
                "uvicorn",
                CONSOLE_APP,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.console_port),
                "--no-access-log",
                # Open live lists (server-sent events) must not hold a stop for long.
                "--timeout-graceful-shutdown",
                "5",
            ]
        if with_mailbox:
            commands = {
                "mailbox": [
                    python,
                    "-m",
                    "incidentflow_tools.cli",
                    "mailbox",
                    "--dir",
                    str(self.mail_dir),
                    "--port",
                    str(self.mail_port),
                ],
                **commands,
            }
        return commands

    def start(self, with_mailbox: bool = True) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env.setdefault("NOTIFIER_JOURNAL_DIR", str(self.var_dir / "notifier-journal"))
        if with_mailbox:
            env.setdefault("SMTP_HOST", "127.0.0.1")
            env.setdefault("SMTP_PORT", str(self.mail_port))
        intake = {"INTAKE_SMTP_PORT": str(self.intake_smtp_port or "off")}
        for name, command in self.commands(with_mailbox).items():
            if self.pid(name) is not None:
                continue
            log = (self.log_dir / f"{name}.log").open("ab")
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env={
                    **env,
                    **(intake if name == "ingest" else {}),
                    # The console logs in as the operators' commands do (docs/adr/0055).
                    **self.service_env.get(name, {}),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            (self.run_dir / f"{name}.pid").write_text(str(process.pid))

    def pid(self, name: str) -> int | None:
        pid_file = self.run_dir / f"{name}.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text())
        if not _alive(pid):
            pid_file.unlink(missing_ok=True)
            return None
        return pid

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES) | ({"console"} if self.console_port is not None else set())
        while pending:
            for name in list(pending):
                if self.pid(name) is None:
                    log = self.log_dir / f"{name}.log"
                    tail = (
                        log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
                    )
                    raise RuntimeError(
                        f"{name} exited; see {log}; its last lines:\n" + "\n".join(tail)
                    )
                try:
                    if httpx.get(self.ready_url(name), timeout=2).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.3)

    def stop(self, timeout: float = 30.0) -> None:
        names = [n for n in [*SERVICES, "console", "mailbox"] if self.pid(n) is not None]
        for name in names:
            pid = self.pid(name)
            if pid is not None:
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in names:
            while self.pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            pid = self.pid(name)
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child that exited; else it would linger as a zombie.
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier `incidentflow up`)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
