"""A Twilio Messages API on loopback: checks basic auth, records each message, answers with a
``sid`` as Twilio does, or with the failure a test scripts (500, 429, 400)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.fakes import Answer, LoopbackServer

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"


@dataclass(frozen=True)
class SentText:
    to: str
    sender: str
    body: str
    sid: str


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    url: str = ""
    # Scripted answers, used one per request before the default (accept with a sid).
    answers: list[Answer] = field(default_factory=list)
    delay: float = 0.0
    requests: int = 0
    unauthorised: int = 0
    texts: list[SentText] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def fail_next(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def handle(
        self, path: str, authorization: str | None, form: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return self._answer(path, authorization, form)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(
        self, path: str, authorization: str | None, form: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if authorization != f"Basic {expected}":
            with self._lock:
                self.unauthorised += 1
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}, {}
        if path != self.path:
            return 404, {"code": 20404, "message": "not found", "status": 404}, {}
        fields = {name: values[0] for name, values in parse_qs(form.decode()).items()}
        with self._lock:
            scripted = self.answers.pop(0) if self.answers else None
            if scripted is not None:
                return scripted.status, scripted.body, scripted.headers
            sid = f"SM{next(self._sids):032x}"
            self.texts.append(SentText(fields["To"], fields["From"], fields["Body"], sid))
        return 201, {"sid": sid, "status": "queued", "to": fields["To"]}, {}


@contextmanager
def fake_twilio(
    account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN
) -> Iterator[FakeTwilio]:
    twilio = FakeTwilio(account_sid, auth_token)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, body, headers = twilio.handle(
                self.path, self.headers.get("Authorization"), self.rfile.read(length)
            )
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = LoopbackServer(("127.0.0.1", 0), Handler)
    twilio.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield twilio
    finally:
        httpd.shutdown()
        httpd.server_close()
