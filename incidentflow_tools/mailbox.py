"""The dev mail inbox: an SMTP server (aiosmtpd) that keeps every message as ``<dir>/*.eml``.

Used when no real SMTP server is configured, so a person can read what customers receive.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class EmlDirectoryHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        partial = self.directory / (name + ".partial")
        partial.write_bytes(content)
        partial.replace(self.directory / name)  # readers never see half a mail
        return "250 Message accepted for delivery"


def start_mailbox(directory: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    controller = Controller(EmlDirectoryHandler(directory), hostname=host, port=port)
    controller.start()
    return controller


async def serve_forever(directory: Path, host: str, port: int) -> None:
    controller = start_mailbox(directory, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()
