"""A request body larger than INGEST_MAX_BODY_BYTES is refused (413) before the app sees it.

Checked on Content-Length and again while the body streams in (a chunked body has none).
The body is then handed to the app in one piece; a JSON body that is not UTF-8 is a 422 here,
since FastAPI would answer it with a bare 400.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 1_048_576


class RequestBodyGuard:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._drain(receive, message)
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        if body and b"json" in headers.get(b"content-type", b""):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                await _answer(
                    send,
                    422,
                    {
                        "detail": [
                            {
                                "loc": ["body"],
                                "msg": f"body is not valid UTF-8 (byte {exc.start})",
                                "type": "json_invalid",
                            }
                        ]
                    },
                )
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _drain(self, receive: Receive, message: Message) -> None:
        """Read a little more of the refused body, so that a client still sending it reads
        the 413 instead of a reset connection; a huge one is cut off (connection: close)."""
        drained = 0
        while message.get("more_body", False) and drained < DRAIN_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))

    async def _too_large(self, send: Send) -> None:
        await _answer(
            send,
            413,
            {"detail": f"request body is larger than {self.max_bytes} bytes"},
            close=True,
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # disconnect detection for the app, as before
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Send, status: int, payload: object, *, close: bool = False) -> None:
    content = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    if close:  # the rest of the body was never read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
