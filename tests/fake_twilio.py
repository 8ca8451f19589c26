"""A Twilio Messages API on loopback: checks basic auth, records each message, answers with a
``sid`` as Twilio does, or with the failure a test scripts (500, 429, 400)."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from services.notifier.adapters.twilio import TwilioTexts
from tests.fakes import Answer, InFlight, JsonHandler, serving

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
    # Run after a message is taken and before Twilio's answer is sent (a test's kill -9).
    before_answer: Callable[[], None] | None = None
    requests: int = 0
    unauthorised: int = 0
    texts: list[SentText] = field(default_factory=list)
    calls: InFlight = field(default_factory=InFlight)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def max_in_flight(self) -> int:
        return self.calls.most

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
        with self.calls.serving():
            time.sleep(self.delay)
            answer = self._answer(path, authorization, form)
        if self.before_answer is not None:
            self.before_answer()
        return answer

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

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            request = self.read_request()
            self.send_json(
                *twilio.handle(request.path, request.headers.get("authorization"), request.body)
            )

    with serving(Handler) as httpd:
        twilio.url = httpd.url
        yield twilio


async def opened_texts(url: str) -> TwilioTexts:
    """The real Twilio adapter, open, pointed at the stand-in at ``url``."""
    texts = TwilioTexts(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number="+14155550100", base_url=url
    )
    await texts.open()
    return texts
