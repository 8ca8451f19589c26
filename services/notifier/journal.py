"""A local journal of the messages handed to a provider, written the instant they are.

The gap it closes: the server has a message's final ``.`` (so it delivers the message), but
the notifier dies before Postgres records the send. The claim's lease then runs out and the
mail goes a second time. That window spans the server's reply, our wake-up and a database
round trip: milliseconds, enough for a kill -9 to land in (the chaos run saw 1 or 2 per run).

So the moment the end of DATA is in the kernel's socket buffer, one line goes to this file in
the same synchronous step: no await in between, so the window shrinks to two system calls. A
file written by ``os.write`` survives the death of the process (it is in the page cache), and
a notifier starting up records every journaled send that Postgres still shows as ``sending``
under the same lease as sent, before it consumes anything. The duplicate redelivery then
finds the notification sent and sends nothing.

Texts are journaled the same way, the moment the body of the POST to Twilio is written. When
the provider's answer then refuses the message (a 4xx/5xx to the end of DATA; Twilio's 5xx,
429 or 4xx), a second line takes the first back as the answer is read, so a kill during the
retry back-off that follows does not record as sent a message nobody took.

Each process holds one slot file in a directory per database under ``NOTIFIER_JOURNAL_DIR``
(flock'ed, so replicas sharing the directory never write the same file); at start it also
takes over the slots of notifiers of the same database that are no longer running.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import get_args
from urllib.parse import urlsplit

from contracts.events import NotificationKind
from services.notifier.notifications import Key

log = logging.getLogger("incidentflow.notifier")

_KINDS: tuple[str, ...] = get_args(NotificationKind)


TAKEN_BACK = "taken-back"


@dataclass(frozen=True)
class Entry:
    """A send handed to the provider under the claim whose lease is ``lease``; or, when
    ``taken_back``, the provider's answer refusing that send after all."""

    key: Key
    lease: datetime
    taken_back: bool = False

    def line(self) -> bytes:
        k = self.key
        mark = f" {TAKEN_BACK}" if self.taken_back else ""
        return f"{k.incident_id} {k.channel} {k.kind} {self.lease.isoformat()}{mark}\n".encode()

    @classmethod
    def parse(cls, line: str) -> Entry | None:
        try:
            incident_id, channel, kind, lease, *mark = line.split(" ")
            if kind not in _KINDS or mark not in ([], [TAKEN_BACK]):
                raise ValueError(f"unknown kind {kind!r} or mark {mark!r}")
            key = Key(uuid.UUID(incident_id), channel, kind)  # type: ignore[arg-type]
            return cls(key, datetime.fromisoformat(lease), taken_back=bool(mark))
        except ValueError:
            return None


def journal_name(database_url: str) -> str:
    """The directory name for one database's journals: a notifier recovers sends only into
    the database they were claimed in (a test's notifier never empties a dev stack's)."""
    parts = urlsplit(database_url)
    name = f"{parts.hostname or 'local'}-{parts.port or 5432}-{parts.path.strip('/') or 'db'}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` (created), held until its descriptor is closed or the
    process dies; None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read(path: Path) -> list[Entry]:
    """The sends handed over in ``path`` and not taken back since (a retry after a refusal
    hands the same send over again: its last line decides)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    handed: dict[tuple[Key, datetime], Entry] = {}
    for line in text.splitlines():
        if (entry := Entry.parse(line)) is None:
            if line:
                log.warning("send journal: unreadable line skipped", extra={"path": str(path)})
        elif entry.taken_back:
            handed.pop((entry.key, entry.lease), None)
        else:
            handed[(entry.key, entry.lease)] = entry
    return list(handed.values())


class SendJournal:
    """One process's slot in the journal directory; see the module's docstring."""

    def __init__(self, directory: Path, *, rotate_bytes: int = 1 << 20) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._rotate_bytes = rotate_bytes
        # Handed over, record not yet committed: what a rotation must carry over.
        self._pending: dict[Key, datetime] = {}
        slot = 0
        while (lock := _lock(directory / f"sends-{slot}.lock")) is None:
            slot += 1
        self._lock_fd = lock
        self.path = directory / f"sends-{slot}.journal"
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def handed_over(self, key: Key, lease: datetime) -> None:
        """The provider has the whole message: called right after its last byte is written."""
        if self._write(Entry(key, lease)):
            self._pending[key] = lease

    def taken_back(self, key: Key, lease: datetime) -> None:
        """The provider's answer refused the message: called as it is read. Nothing to take
        back unless its hand-over was journaled."""
        if self._pending.pop(key, None) is not None:
            self._write(Entry(key, lease, taken_back=True))

    def _write(self, entry: Entry) -> bool:
        try:
            os.write(self._fd, entry.line())
        except OSError as exc:
            # A full or broken disk must not fail a send the provider already has (it would
            # be retried, and sent twice): this one just goes without the journal's cover.
            log.warning("send journal: write failed", extra={"error": repr(exc)})
            return False
        return True

    def settled(self, key: Key) -> None:
        """Postgres has the outcome of ``key``'s send; its line is no longer needed."""
        if self._pending.pop(key, None) is None:
            return
        if os.fstat(self._fd).st_size > self._rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        # A new file with the sends still unrecorded, swapped in by rename: a crash at any
        # point leaves either the old file or the new one, and each holds those sends.
        fresh = self.path.with_suffix(".rotating")
        fresh.write_bytes(b"".join(Entry(k, lease).line() for k, lease in self._pending.items()))
        os.replace(fresh, self.path)
        os.close(self._fd)
        self._fd = self._open()

    @contextmanager
    def left_behind(self) -> Iterator[list[Entry]]:
        """The entries of this slot and of every slot no running notifier holds: sends that
        a process which died may not have recorded. The files are emptied when the block
        exits normally (the caller has recorded them); an error leaves them for next time."""
        with ExitStack() as held:
            paths = [self.path]
            for lock_path in sorted(self.directory.glob("sends-*.lock")):
                journal = lock_path.with_suffix(".journal")
                if journal == self.path or (fd := _lock(lock_path)) is None:
                    continue
                held.callback(os.close, fd)
                paths.append(journal)
            entries = [entry for path in paths for entry in _read(path)]
            yield entries
            for path in paths:
                if path == self.path:
                    os.ftruncate(self._fd, 0)
                else:
                    path.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._lock_fd)


@dataclass(frozen=True)
class JournaledSend:
    """One send's :class:`~services.notifier.adapters.base.Handover`, into the journal."""

    journal: SendJournal
    key: Key
    lease: datetime

    def handed_over(self) -> None:
        self.journal.handed_over(self.key, self.lease)

    def taken_back(self) -> None:
        self.journal.taken_back(self.key, self.lease)
