"""A private Dovecot IMAP server for one test: loopback port, Maildir and runtime of its own.

``dovecot_server(directory)`` writes a self-contained ``dovecot.conf`` into ``directory``
(nothing from /etc/dovecot), starts ``dovecot -F`` in a process group of its own, waits until
an IMAP LOGIN works and stops it again on exit. Every socket, pid file and state file lives
under ``directory``, so it never meets a system Dovecot or another test's server.

Run as root (the tests are), the mail processes run as the ``dovecot`` account, chrooted into
``directory``: Dovecot refuses uid 0 for mail ("userdb returned 0 as uid"), and pytest's
temporary directories sit below a 0700 root directory no other account can pass through. The
chroot is entered as root, so only ``directory`` itself needs to be traversable. Run as any
other user, every process runs as that user and nothing is chrooted.
"""

from __future__ import annotations

import grp
import imaplib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from incidentflow_tools.sandbox import free_port

HOST = "127.0.0.1"
USER = "tester"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0  # Dovecot's master needs about 1 s to stop
# Debian's dovecot-core creates both accounts; only the mail processes need one to own mail.
MAIL_ACCOUNT = "dovecot"
LOGIN_ACCOUNT = "dovenull"

_deliveries = itertools.count()


@dataclass
class Dovecot:
    host: str
    port: int  # plain IMAP (no TLS) on loopback
    user: str
    password: str
    maildir: Path  # the user's Maildir++ root (INBOX); other folders are ``.Name`` in it
    log: Path | None = None  # Dovecot's log file
    uid: int = field(default=-1, repr=False)  # owner of what ``deliver`` writes (-1: unchanged)
    gid: int = field(default=-1, repr=False)

    def url(self, mailbox: str = "INBOX") -> str:
        return f"imap://{self.user}@{self.host}:{self.port}/{mailbox}"

    def folder_path(self, folder: str = "INBOX") -> Path:
        """The directory of ``folder`` (Maildir++: INBOX is the root, others ``.Name``)."""
        if folder.upper() == "INBOX":
            return self.maildir
        if (
            not folder
            or folder.startswith(".")
            or "/" in folder
            or not folder.isascii()
            or not folder.isprintable()
        ):
            raise ValueError(f"folder name this helper does not map to Maildir++: {folder!r}")
        return self.maildir / f".{folder}"

    def deliver(self, raw: bytes, folder: str = "INBOX") -> Path:
        """Write one mail into ``folder`` as an MTA does: into tmp/, then renamed into new/."""
        directory = self.folder_path(folder)
        self._ensure_folder(directory, subfolder=directory != self.maildir)
        name = _unique_name()
        staged = directory / "tmp" / name
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._own(staged)
        delivered = directory / "new" / name
        os.link(staged, delivered)  # fails instead of replacing, as maildir asks
        staged.unlink()
        return delivered

    def messages(self, folder: str = "INBOX") -> list[Path]:
        """The mail files of ``folder`` (new/ and cur/), by name."""
        directory = self.folder_path(folder)
        return sorted(
            (
                path
                for sub in ("new", "cur")
                if (directory / sub).is_dir()
                for path in (directory / sub).iterdir()
                if not path.name.startswith(".")
            ),
            key=lambda path: path.name,
        )

    def locate(self, message: Path | str, folder: str = "INBOX") -> Path:
        """Where a message is now: Dovecot renames the file when it moves it from new/ to cur/
        or changes its flags. ``message`` is a path ``deliver`` returned (its own folder is
        searched) or a file name (``folder`` is searched); the part before ``:`` is its key."""
        path = Path(message)
        directory = path.parent.parent if path.is_absolute() else self.folder_path(folder)
        key = path.name.split(":", 1)[0]
        for sub in ("cur", "new"):
            for candidate in (directory / sub).iterdir():
                if candidate.name.split(":", 1)[0] == key:
                    return candidate
        raise FileNotFoundError(f"no message {key} in {directory}")

    def flags(self, message: Path | str, folder: str = "INBOX") -> str:
        """The Maildir flags of a message, the letters after ``:2,`` (``S`` is \\Seen, ``T``
        \\Deleted, ``F`` \\Flagged, ``R`` \\Answered, ``D`` \\Draft); "" for one in new/."""
        _, _, flags = self.locate(message, folder).name.partition(":2,")
        return flags

    def _ensure_folder(self, directory: Path, subfolder: bool) -> None:
        for path in (directory, directory / "cur", directory / "new", directory / "tmp"):
            if not path.is_dir():
                path.mkdir(mode=0o700, exist_ok=True)
                self._own(path)
        marker = directory / "maildirfolder"
        if subfolder and not marker.exists():
            marker.touch(mode=0o600)
            self._own(marker)

    def _own(self, path: Path) -> None:
        if self.uid >= 0 and os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)


def _unique_name() -> str:
    """``time.M<usec>P<pid>Q<n>.host``, the usual maildir name; unique within this host."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return f"{seconds}.M{micros}P{os.getpid()}Q{next(_deliveries)}.{host}"


def dovecot_binary() -> str:
    found = shutil.which("dovecot") or shutil.which(
        "dovecot", path="/usr/sbin:/usr/local/sbin:/sbin"
    )
    if found is None:
        raise RuntimeError(
            "dovecot is not installed; the IMAP tests need it: apt-get install dovecot-imapd"
        )
    return found


def _config(directory: Path, port: int, users: Path) -> tuple[str, int, int]:
    """dovecot.conf for ``directory`` and the uid and gid that own the mail."""
    if os.geteuid() == 0:
        try:
            mail = pwd.getpwnam(MAIL_ACCOUNT)
            pwd.getpwnam(LOGIN_ACCOUNT)
        except KeyError as missing:
            raise RuntimeError(
                f"Dovecot's accounts {MAIL_ACCOUNT} and {LOGIN_ACCOUNT} are missing: "
                "apt-get install dovecot-imapd"
            ) from missing
        internal, login = MAIL_ACCOUNT, LOGIN_ACCOUNT
        uid, gid = mail.pw_uid, mail.pw_gid
        # Mail processes chroot into ``directory`` (as root, before dropping to uid): paths
        # after "/./" and in mail_location are inside it. The auth process runs as root: the
        # users file sits below pytest's 0700 directory too.
        home, mail_location = f"{directory}/./home", "maildir:/Maildir"
        privileged = f"valid_chroot_dirs = {directory}\nservice auth {{\n  user = root\n}}\n"
    else:
        me = pwd.getpwuid(os.geteuid())
        internal = login = me.pw_name
        uid, gid = me.pw_uid, me.pw_gid
        home, mail_location = f"{directory}/home", f"maildir:{directory}/Maildir"
        group = grp.getgrgid(gid).gr_name
        # Only root may chroot: no service imap needs does (anvil, ipc, ... do by default).
        unchrooted = "".join(
            f"service {service} {{\n  chroot =\n}}\n"
            for service in ("anvil", "imap-login", "ipc", "old-stats")
        )
        privileged = f"default_internal_group = {group}\n{unchrooted}"
    text = f"""\
# A private Dovecot for one test, written by tests/dovecot.py. Self-contained: nothing is
# included from /etc/dovecot, and every runtime file stays under {directory}.
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = {mail_location}
{privileged}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""
    return text, uid, gid


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(none)"


def _login_works(server: Dovecot) -> bool:
    try:
        with imaplib.IMAP4(server.host, server.port, timeout=2) as conn:
            conn.login(server.user, server.password)
    except (OSError, imaplib.IMAP4.error):
        return False
    return True


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run. Zombies do not count: children the master
    left behind are reparented and reaped by PID 1 in its own time (here over a second)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(stat.parent.name))
    return members


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the master, which stops its children and exits (it takes a second), then
    SIGKILL to anything left running in its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + 2
    while _live_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _live_members(process.pid):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _start(binary: str, directory: Path, password: str) -> tuple[Dovecot, subprocess.Popen[bytes]]:
    """Dovecot started and answering an IMAP LOGIN; on a port another process took between
    free_port and the bind (free_port cannot reserve it), started again on another port."""
    users = directory / "users"
    conf = directory / "dovecot.conf"
    log = directory / "dovecot.log"
    stderr_path = directory / "dovecot.stderr"
    for attempt in range(1, 4):
        port = free_port()
        text, uid, gid = _config(directory, port, users)
        conf.write_text(text)
        server = Dovecot(HOST, port, USER, password, directory / "Maildir", log, uid, gid)
        server._ensure_folder(server.maildir, subfolder=False)
        home = directory / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        server._own(home)
        log.unlink(missing_ok=True)
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                process_group=0,  # its own group: _stop can see and end every child
            )
        ready = False
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _login_works(server):
                    ready = True
                    return server, process
                time.sleep(0.05)
            exited = process.poll()
        finally:
            if not ready:  # also on an interrupt while waiting: leave no server behind
                _stop(process)
        log_tail, stderr_tail = _tail(log), _tail(stderr_path)
        if "Address already in use" in log_tail + stderr_tail and attempt < 3:
            continue
        state = (
            f"exited with {exited}"
            if exited is not None
            else f"gave no IMAP LOGIN within {START_TIMEOUT:.0f} s"
        )
        raise RuntimeError(
            f"dovecot on {HOST}:{port} {state} (config {conf})\n"
            f"--- log {log}:\n{log_tail}\n--- stderr:\n{stderr_tail}"
        )
    raise AssertionError("unreachable")


@contextmanager
def dovecot_server(directory: Path) -> Iterator[Dovecot]:
    """A Dovecot serving IMAP on a free loopback port, its Maildir in ``directory``/Maildir.

    Raises RuntimeError, with the tail of Dovecot's log, when it is not installed or gives no
    IMAP LOGIN within START_TIMEOUT seconds."""
    binary = dovecot_binary()
    directory = Path(directory).resolve()
    if any(ch.isspace() or ch in "\"'#" for ch in str(directory)):
        raise ValueError(f"dovecot.conf cannot hold this path unquoted: {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    # The chrooted mail processes must pass through it (they never list it).
    directory.chmod(directory.stat().st_mode | 0o111)
    for sub in ("run", "state"):
        (directory / sub).mkdir(exist_ok=True)
    password = secrets.token_urlsafe(16)
    users = directory / "users"
    users.touch(mode=0o600)  # read by the auth process: root (unprivileged: the one user)
    users.chmod(0o600)
    users.write_text(f"{USER}:{{PLAIN}}{password}::::::\n")
    server, process = _start(binary, directory, password)
    try:
        yield server
    finally:
        _stop(process)
