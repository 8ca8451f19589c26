"""The private Dovecot of tests/dovecot.py: mail delivered into its Maildir is served over
IMAP, FETCH marks it seen on disk, UID MOVE files it into another folder, and IDLE works."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.dovecot import Dovecot, dovecot_server

FIRST = (
    b"From: Customer <customer@example.com>\n"
    b"To: support@example.com\n"
    b"Subject: first\n"
    b"Message-ID: <first@example.com>\n"
    b"\n"
    b"My card payment failed twice.\n"
)
SECOND = (
    b"From: Customer <customer@example.com>\n"
    b"To: support@example.com\n"
    b"Subject: second\n"
    b"Message-ID: <second@example.com>\n"
    b"\n"
    b"Still failing.\n"
)


def on_the_wire(raw: bytes) -> bytes:
    """The message as IMAP serves it: the Maildir holds LF line ends, IMAP sends CRLF."""
    return raw.replace(b"\n", b"\r\n")


@contextmanager
def logged_in(server: Dovecot) -> Iterator[imaplib.IMAP4]:
    conn = imaplib.IMAP4(server.host, server.port, timeout=5)
    try:
        conn.login(server.user, server.password)
        yield conn
    finally:
        conn.logout()


def ok(answer: tuple[str, Sequence[object]]) -> Sequence[object]:
    status, data = answer
    assert status == "OK", data
    return data


def capabilities(conn: imaplib.IMAP4) -> list[bytes]:
    """What the server offers now (after LOGIN: more than before it)."""
    data = ok(conn.capability())
    # imaplib also keeps the CAPABILITY code of LOGIN's answer; the last one is the fresh one.
    assert isinstance(data[-1], bytes)
    return data[-1].split()


def uid_of(conn: imaplib.IMAP4, subject: str) -> str:
    (found,) = ok(conn.uid("SEARCH", "SUBJECT", subject))
    assert isinstance(found, bytes)
    (uid,) = found.split()
    return uid.decode()


def test_delivered_mail_is_fetched_marked_seen_and_moved(tmp_path: Path) -> None:
    with dovecot_server(tmp_path) as server:
        first = server.deliver(FIRST)
        second = server.deliver(SECOND)
        assert first.parent.name == "new"
        assert sorted(server.messages()) == sorted([first, second])
        assert server.url() == f"imap://tester@127.0.0.1:{server.port}/INBOX"

        with logged_in(server) as conn:
            assert ok(conn.select("INBOX")) == [b"2"]
            uid = uid_of(conn, "first")

            fetched = ok(conn.uid("FETCH", uid, "(RFC822)"))
            assert isinstance(fetched[0], tuple)
            assert fetched[0][1] == on_the_wire(FIRST)
            # \Seen is in the file name on disk by the time FETCH answers OK.
            assert "S" in server.flags(first)
            assert "S" not in server.flags(second)
            assert server.locate(first).read_bytes() == FIRST

            assert b"MOVE" in capabilities(conn)
            ok(conn.create("Processed"))
            ok(conn.uid("MOVE", uid, "Processed"))

        moved = server.messages("Processed")
        assert len(moved) == 1
        assert moved[0].read_bytes() == FIRST
        assert "S" in server.flags(moved[0])
        assert server.messages("INBOX") == [server.locate(second)]


def test_idle_is_offered_and_wakes_on_delivery(tmp_path: Path) -> None:
    with dovecot_server(tmp_path) as server, logged_in(server) as conn:
        assert b"IDLE" in capabilities(conn)

        ok(conn.select("INBOX"))
        # imaplib has no IDLE before Python 3.14: speak it by hand.
        conn.send(b"I1 IDLE\r\n")
        assert conn.readline().startswith(b"+")
        server.deliver(FIRST)
        assert conn.readline() == b"* 1 EXISTS\r\n"  # the socket's 5 s timeout bounds it
        conn.send(b"DONE\r\n")
        line = conn.readline()
        while not line.startswith(b"I1 "):
            line = conn.readline()
        assert line.startswith(b"I1 OK"), line
