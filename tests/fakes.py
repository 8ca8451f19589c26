"""Real HTTP servers on loopback standing in for outside services (Gemini, ticket APIs).

A test scripts the answers; the server records what arrived over the wire.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server for fakes: a client that goes away mid-request (a killed
    service, a timed-out call) is normal here, not a traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @classmethod
    def started(
        cls, handler: type[BaseHTTPRequestHandler], port: int = 0, poll_interval: float = 0.5
    ) -> LoopbackServer:
        """Listening on 127.0.0.1:port (0: any free port), served from a daemon thread."""
        httpd = cls(("127.0.0.1", port), handler)
        threading.Thread(target=httpd.serve_forever, args=(poll_interval,), daemon=True).start()
        return httpd

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[LoopbackServer]:
    httpd = LoopbackServer.started(handler)
    try:
        yield httpd
    finally:
        httpd.stop()


class InFlight:
    """How many calls a fake is serving at once, and the most ever: the tests of concurrency
    bounds read ``most``."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    @contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class JsonHandler(BaseHTTPRequestHandler):
    """Reads each request as it arrived, answers JSON, and logs nothing."""

    def read_request(self) -> Received:
        length = int(self.headers.get("Content-Length") or 0)
        return Received(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length),
        )

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a timeout test), or the fake was taken down

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeServer:
    def __init__(self, answers: list[Answer], default: Answer) -> None:
        self.answers = answers
        self.default = default
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.url = ""
        self.calls = InFlight()

    @property
    def max_in_flight(self) -> int:
        return self.calls.most

    def next_answer(self, request: Received) -> Answer:
        with self._lock:
            self.received.append(request)
            return self.answers.pop(0) if self.answers else self.default


@contextmanager
def fake_server(*answers: Answer, default: Answer | None = None) -> Iterator[FakeServer]:
    server = FakeServer(list(answers), default or Answer(200, {}))

    class Handler(JsonHandler):
        def _handle(self) -> None:
            answer = server.next_answer(self.read_request())
            with server.calls.serving():
                time.sleep(answer.delay)
            self.send_json(answer.status, answer.body, answer.headers)

        do_POST = do_GET = do_PUT = _handle

    with serving(Handler) as httpd:
        server.url = httpd.url
        yield server
