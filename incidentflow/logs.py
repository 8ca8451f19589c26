"""Structured JSON logs, one line per event, with emails and phone numbers masked."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from incidentflow.privacy import MaskPersonalData


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    # On the handler, not the root logger: a logger's filters skip records propagated from
    # its children, a handler's see every record it writes.
    handler.addFilter(MaskPersonalData())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-message INFO lines from FastStream duplicate our own event logs.
    faststream = logging.getLogger("faststream")
    faststream.setLevel(logging.WARNING)
    # FastStream gives its logger a plain stderr handler of its own: route it through ours.
    faststream.handlers[:] = []
    faststream.propagate = True
    # uvicorn gives its loggers handlers of their own, past the masking: an access log line's
    # path or query can hold an address. Route them through ours too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server = logging.getLogger(name)
        server.handlers[:] = []
        server.propagate = True
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
