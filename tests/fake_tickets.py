"""A fake ticket API on loopback speaking the generic REST, Zendesk and Jira shapes.

A real HTTP server: it honours ``Idempotency-Key`` (same key → the same ticket, answered
again), answers Jira's JQL search by label, records every request as it arrived, and can be
told to fail (5xx), throttle (429 + Retry-After), hang, or be down — refusing connections
(``down()``) or accepting and dropping them (``down(reset=True)``, which counts the calls).

Comments on a ticket it created, as each API takes them: REST ``POST …/{id}/comments``
(201, deduplicated by ``Idempotency-Key``), Zendesk ``PUT /api/v2/tickets/{id}.json`` with
``{"ticket": {"comment": …}}`` (200, ticket and audit; Zendesk documents its key for creates
only, so none here), Jira ``POST /rest/api/3/issue/{key}/comment`` (201, no key). A comment on
a ticket it does not know answers 404. Faults apply to comments as to creates.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from tests.fakes import InFlight, JsonHandler, LoopbackServer, Received

REST_PATH = "/api/tickets"
ZENDESK_PATH = "/api/v2/tickets.json"
JIRA_ISSUE_PATH = "/rest/api/3/issue"
JIRA_SEARCH_PATH = "/rest/api/3/search/jql"

_REST_COMMENTS = re.compile(re.escape(REST_PATH) + r"/([^/?]+)/comments")
_ZENDESK_TICKET = re.compile(r"/api/v2/tickets/([^/?]+)\.json")
_JIRA_COMMENTS = re.compile(re.escape(JIRA_ISSUE_PATH) + r"/([^/?]+)/comment")
# Where a comment goes, per API, and by which method.
_COMMENT_ROUTES = (
    ("rest", "POST", _REST_COMMENTS),
    ("zendesk", "PUT", _ZENDESK_TICKET),
    ("jira", "POST", _JIRA_COMMENTS),
)
# The APIs that answer a repeated Idempotency-Key on a comment with the first comment.
_COMMENT_KEYS_HONOURED = frozenset({"rest"})


def rest_comments_path(ticket_id: str) -> str:
    return f"{REST_PATH}/{quote(ticket_id, safe='')}/comments"


def zendesk_ticket_path(ticket_id: str) -> str:
    return f"/api/v2/tickets/{quote(ticket_id, safe='')}.json"


def jira_comments_path(key: str) -> str:
    return f"{JIRA_ISSUE_PATH}/{quote(key, safe='')}/comment"


@dataclass
class Fault:
    """How the next request goes wrong."""

    status: int = 500
    retry_after: float | None = None
    # Sleep this long before answering (past the client's timeout: a hang).
    hang: float = 0.0
    # Create the ticket first, then hang or fail: the answer is lost, the ticket is not.
    after_create: bool = False


@dataclass
class Ticket:
    id: str
    kind: str
    incident_id: str
    body: Any


@dataclass
class Comment:
    id: str
    ticket_id: str
    kind: str
    body: Any  # the request's JSON, as it arrived


@dataclass
class FakeTicketApi:
    rest_id_field: str = "id"
    received: list[Received] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # Connections accepted and dropped while down(reset=True).
    dropped: int = 0
    # Every good answer takes this long (a slow but healthy API).
    latency: float = 0.0
    calls: InFlight = field(default_factory=InFlight)
    url: str = ""
    # (path, Idempotency-Key) → the answer to replay: each API has its own keys.
    _replies: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    _mode: str = "up"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: set[socket.socket] = field(default_factory=set)
    _httpd: LoopbackServer | None = None
    _port: int = 0

    @property
    def max_in_flight(self) -> int:
        return self.calls.most

    def fail(self, *faults: Fault) -> None:
        """The next requests, one fault each, in order; then normal answers again."""
        with self._lock:
            self.faults.extend(faults)

    def tickets_for(self, incident_id: object) -> list[Ticket]:
        with self._lock:
            return [t for t in self.tickets if t.incident_id == str(incident_id)]

    def comments_on(self, ticket_id: str) -> list[Comment]:
        with self._lock:
            return [c for c in self.comments if c.ticket_id == ticket_id]

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    # --- up and down -------------------------------------------------------------------

    def start(self) -> None:
        # The same port again after down(): clients keep their configured URL.
        httpd = LoopbackServer.started(_handler(self), self._port, poll_interval=0.05)
        self._port = int(httpd.server_address[1])
        self.url = httpd.url
        self._httpd = httpd
        self._mode = "up"

    def down(self, *, reset: bool = False) -> None:
        """Refuse connections (stop listening), or with ``reset`` accept and drop each one."""
        if reset:
            self._mode = "reset"
            self._cut_connections()
            return
        self._mode = "down"
        if self._httpd is not None:
            self._httpd.stop()
            self._httpd = None
        self._cut_connections()

    def up(self) -> None:
        if self._httpd is None:
            self.start()
        self._mode = "up"

    def stop(self) -> None:
        self.down()

    def _cut_connections(self) -> None:
        # Kept-alive connections would otherwise go on being served.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # --- answering ------------------------------------------------------------------------

    def answer(self, request: Received) -> tuple[int, Any, dict[str, str], float]:
        """Status, body, extra headers and how long to sleep first."""
        with self._lock:
            self.received.append(request)
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None and not fault.after_create:
            return self._fault_answer(fault)
        status, body, headers = self._route(request)
        if fault is not None:
            return self._fault_answer(fault)
        return status, body, headers, self.latency

    @staticmethod
    def _fault_answer(fault: Fault) -> tuple[int, Any, dict[str, str], float]:
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        return fault.status, {"error": "injected"}, headers, fault.hang

    def _route(self, request: Received) -> tuple[int, Any, dict[str, str]]:
        if request.method not in ("POST", "PUT"):
            return 405, {"error": "method"}, {}
        try:
            body = request.json()
        except ValueError:
            # A client killed mid-request leaves a short or empty body: answer as a real API
            # would, without a traceback in the chaos run's output.
            return 400, {"error": "body is not JSON"}, {}
        for api, method, pattern in _COMMENT_ROUTES:
            match = pattern.fullmatch(request.path)
            if match is not None:
                if request.method != method:
                    return 405, {"error": "method"}, {}
                return self._comment(api, unquote(match.group(1)), request, body)
        if request.method != "POST":
            return 405, {"error": "method"}, {}
        if request.path == JIRA_SEARCH_PATH:
            return 200, self._search(body), {}
        kind = {REST_PATH: "rest", ZENDESK_PATH: "zendesk", JIRA_ISSUE_PATH: "jira"}.get(
            request.path
        )
        if kind is None:
            return 404, {"error": "no such path"}, {}
        header = request.headers.get("idempotency-key")
        key = None if header is None else (request.path, header)
        with self._lock:
            if key is not None and key in self._replies:
                status, reply = self._replies[key]
                return status, reply, {"X-Idempotent-Replay": "true"}
            number = len(self.tickets) + 1
            ticket_id, reply = self._create(kind, number, body)
            self.tickets.append(Ticket(ticket_id, kind, _incident_of(kind, body), body))
            if key is not None:
                self._replies[key] = (201, reply)
        return 201, reply, {}

    def _comment(
        self, kind: str, ticket_id: str, request: Received, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        header = request.headers.get("idempotency-key")
        key = (
            (request.path, header)
            if header is not None and kind in _COMMENT_KEYS_HONOURED
            else None
        )
        with self._lock:
            if key is not None and key in self._replies:
                status, reply = self._replies[key]
                return status, reply, {"X-Idempotent-Replay": "true"}
            ticket = next((t for t in self.tickets if t.kind == kind and t.id == ticket_id), None)
            if ticket is None:
                return 404, _not_found(kind), {}
            refused = _refused_comment(kind, body)
            if refused is not None:
                return 400, refused, {}
            comment = Comment(str(len(self.comments) + 1), ticket_id, kind, body)
            self.comments.append(comment)
            status, reply = self._commented(ticket, comment)
            if key is not None:
                self._replies[key] = (status, reply)
        return status, reply, {}

    def _commented(self, ticket: Ticket, comment: Comment) -> tuple[int, Any]:
        if ticket.kind == "rest":
            return 201, {self.rest_id_field: comment.id, "ticket_id": ticket.id}
        if ticket.kind == "zendesk":
            note = comment.body["ticket"]["comment"]
            return 200, {
                "ticket": {"id": int(ticket.id), **ticket.body["ticket"]},
                "audit": {
                    "id": 5000 + int(comment.id),
                    "ticket_id": int(ticket.id),
                    "events": [
                        {
                            "id": 6000 + int(comment.id),
                            "type": "Comment",
                            "body": note["body"],
                            "public": note.get("public", True),
                        }
                    ],
                },
            }
        comment_id = str(20000 + int(comment.id))
        return 201, {
            "id": comment_id,
            "self": f"{self.url}{JIRA_ISSUE_PATH}/{ticket.id}/comment/{comment_id}",
            "body": comment.body["body"],
            "created": "2025-11-09T10:00:00.000+0000",
        }

    def _create(self, kind: str, number: int, body: Any) -> tuple[str, Any]:
        if kind == "rest":
            ticket_id = f"REST-{number}"
            return ticket_id, {self.rest_id_field: ticket_id, "createdAt": "2025-11-09"}
        if kind == "zendesk":
            ticket_id = str(1000 + number)
            return ticket_id, {"ticket": {"id": int(ticket_id), **body["ticket"]}}
        key = f"{body['fields']['project']['key']}-{number}"
        return key, {"id": str(10000 + number), "key": key, "self": f"{self.url}/issue/{key}"}

    def _search(self, body: Any) -> Any:
        jql = str(body.get("jql", ""))
        project = re.search(r'project = "([^"]+)"', jql)
        label = re.search(r'labels = "([^"]+)"', jql)
        with self._lock:
            issues = [
                {"id": str(10000 + i), "key": t.id}
                for i, t in enumerate(self.tickets, start=1)
                if t.kind == "jira"
                and project is not None
                and t.id.startswith(project.group(1) + "-")
                and label is not None
                and label.group(1) in t.body["fields"]["labels"]
            ]
        return {"issues": issues[: int(body.get("maxResults", 50))], "isLast": True}


def _not_found(kind: str) -> Any:
    if kind == "zendesk":
        return {"error": "RecordNotFound", "description": "Not found"}
    if kind == "jira":
        return {
            "errorMessages": ["Issue does not exist or you do not have permission to see it."],
            "errors": {},
        }
    return {"error": "no such ticket"}


def _refused_comment(kind: str, body: Any) -> Any | None:
    """What the API says of a comment without its body (None: it takes the comment)."""
    if kind == "rest":
        ok = isinstance(body, dict) and isinstance(body.get("body"), str) and bool(body["body"])
    elif kind == "zendesk":
        ticket = body.get("ticket") if isinstance(body, dict) else None
        comment = ticket.get("comment") if isinstance(ticket, dict) else None
        ok = isinstance(comment, dict) and isinstance(comment.get("body"), str)
    else:
        # v3 takes Atlassian Document Format only: a plain string is refused.
        document = body.get("body") if isinstance(body, dict) else None
        ok = isinstance(document, dict) and document.get("type") == "doc"
    return None if ok else {"error": "comment body missing or malformed"}


def _incident_of(kind: str, body: Any) -> str:
    if kind == "rest":
        return str(body.get("incident_id"))
    if kind == "zendesk":
        return str(body["ticket"]["external_id"]).removeprefix("incident-")
    labels = [str(label) for label in body["fields"]["labels"]]
    return next(
        (
            label.removeprefix("incidentflow-")
            for label in labels
            if label != "incidentflow" and label.startswith("incidentflow-")
        ),
        "",
    )


def _handler(api: FakeTicketApi) -> type[JsonHandler]:
    class Handler(JsonHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do

        def setup(self) -> None:
            super().setup()
            with api._lock:
                api._connections.add(self.connection)

        def finish(self) -> None:
            with api._lock:
                api._connections.discard(self.connection)
            with suppress(OSError):
                super().finish()

        def handle_one_request(self) -> None:
            if api._mode == "reset":
                with api._lock:
                    api.dropped += 1
                # Linger 0: closing sends a reset, as a dead load balancer does.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            super().handle_one_request()

        def do_POST(self) -> None:
            request = self.read_request()
            with api.calls.serving():
                status, body, headers, delay = api.answer(request)
                time.sleep(delay)
            self.send_json(status, body, headers)

        do_GET = do_POST
        do_PUT = do_POST

    return Handler


@contextmanager
def fake_ticket_api(*, rest_id_field: str = "id") -> Iterator[FakeTicketApi]:
    api = FakeTicketApi(rest_id_field=rest_id_field)
    api.start()
    try:
        yield api
    finally:
        api.stop()
