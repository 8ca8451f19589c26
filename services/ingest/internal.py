"""Ingest's internal port: health probes and metrics, apart from the public API.

In production the public port answers the API alone; probes and Prometheus reach
``/health/live``, ``/health/ready`` and ``/metrics`` on INGEST_INTERNAL_PORT (9000 by
default there), which the network policy does not open to the outside. Elsewhere the same
routes stay on the public port too, as `make up` and the tests use them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

# How long the internal server may take to bind before the start fails.
START_TIMEOUT_SECONDS = 10.0


def internal_app() -> FastAPI:
    """An app without the API's documentation pages; its routes are added by the caller."""
    return FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def internal_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """The internal server's settings. Made with ``access_log`` on and switched off after:
    with it off, uvicorn's Config empties the process-wide ``uvicorn.access`` logger, and
    the public port's access lines would be lost with the probes'."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="off")
    config.access_log = False  # probes every few seconds are not worth a line each
    return config


@asynccontextmanager
async def serving(app: FastAPI, host: str, port: int) -> AsyncIterator[None]:
    """``app`` served on ``host:port`` for as long as the context lasts.

    uvicorn's ``serve`` takes over SIGTERM and SIGINT while it runs, then hands a signal it
    caught back to the handlers it found (the public server's), so a stop reaches both."""
    server = uvicorn.Server(internal_config(app, host, port))
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
    while not server.started:
        if task.done():
            task.result()  # the reason it could not start (a port in use)
            raise RuntimeError(f"the internal server on port {port} stopped at start")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the internal server on port {port} did not start")
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        await task
