"""Schemathesis against ingest's OpenAPI, over HTTP to a real uvicorn with the real broker and DB.

Every operation, ~200 generated cases each: no 5xx, and every response as documented.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from incidentflow_tools.sandbox import free_port
from incidentflow_tools.stack import REPO_ROOT
from tests.services.ingest.conftest import BOTH_KEY, KEYS

CASES_PER_OPERATION = 200
generated: Counter[str] = Counter()


# Module scope: its outbox relay must be gone before the relay tests, which share the database.
@pytest.fixture(scope="module")
def ingest_url(
    rabbitmq_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = Path(tmp_path_factory.mktemp("fuzz")) / "ingest.log"
    env = {
        **os.environ,
        "RABBITMQ_URL": rabbitmq_url,
        "DATABASE_URL": database_url,
        "MIGRATE_ON_START": "false",
        "INGEST_API_KEYS": KEYS[2].entry(),
        "INGEST_WAIT_SECONDS": "0",
        "INGEST_MAX_WAIT_SECONDS": "0",
        "INGEST_RATE_LIMIT_PER_KEY": "100000/minute",
        "INGEST_RATE_LIMIT_PER_CUSTOMER": "100000/minute",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "services.ingest.app:app",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-access-log",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "ingest was not ready within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def ingest_schema(ingest_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(ingest_url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("ingest_schema")


@schema.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_ingest_api(case: schemathesis.Case[Any], ingest_url: str) -> None:
    generated[f"{case.method} {case.path}"] += 1
    case.call_and_validate(
        base_url=ingest_url,
        headers={"X-API-Key": BOTH_KEY},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )


# The API as documented in docs and the README; the schema may add to it, never drop from it.
OPERATIONS = {
    "POST /api/incidents",
    "GET /api/incidents",
    "GET /api/incidents/{incident_id}",
    "PATCH /api/incidents/{incident_id}",
    "POST /api/incidents/{incident_id}/corrections",
    "GET /api/stats",
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def test_every_operation_was_fuzzed(ingest_url: str) -> None:
    # Runs after the parametrized cases above (same module, file order). Every operation in
    # the served schema counts, so a new endpoint cannot go unfuzzed. Schemathesis also
    # tries undocumented methods; those count as extra.
    paths = httpx.get(ingest_url + "/openapi.json", timeout=10).json()["paths"]
    served = {
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method in item
        if method in HTTP_METHODS
    }
    assert served >= OPERATIONS, OPERATIONS - served
    documented = {op: n for op, n in generated.items() if op in served}
    assert set(documented) == served, generated
    assert all(n >= 100 for n in documented.values()), documented
    assert sum(documented.values()) >= 1000, documented
