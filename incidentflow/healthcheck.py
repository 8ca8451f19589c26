"""The image's HEALTHCHECK: ready on the service port (8000), or on ingest's internal port.

``python -m incidentflow.healthcheck`` exits 0 when ``/health/ready`` answers 200 on
127.0.0.1:8000, or on INGEST_INTERNAL_PORT (9000 by default), where ingest serves its probes
in production and nowhere else (services/ingest/internal.py); 1 otherwise. Standard library
only: it runs every few seconds in every container.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

SERVICE_PORT = 8000
TIMEOUT_SECONDS = 2.0


def ports() -> list[int]:
    return [SERVICE_PORT, int(os.environ.get("INGEST_INTERNAL_PORT") or 9000)]


def ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    return 0 if any(ready(port) for port in ports()) else 1


if __name__ == "__main__":
    sys.exit(main())
