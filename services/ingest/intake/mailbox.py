"""Where the mailbox ingest reads is: INTAKE_IMAP_URL, parsed (no I/O, so settings can check it)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Mailbox:
    tls: bool
    host: str
    port: int
    user: str
    mailbox: str

    @classmethod
    def parse(cls, url: str) -> Mailbox:
        """``imaps://user@host[:port]/MAILBOX`` (or ``imap://`` on a trusted network)."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ValueError("INTAKE_IMAP_URL must look like imaps://user@host/INBOX")
        tls = parts.scheme == "imaps"
        return cls(
            tls=tls,
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            user=unquote(parts.username),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        )
