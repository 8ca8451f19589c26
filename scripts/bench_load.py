"""Open-loop load generator for `make bench`: POSTs incidents at a fixed rate, whatever the answers.

Runs in its own process so its CPU is not the system's. Request i is due at i/RATE seconds; its
latency is measured from that due time, so a slow answer that delays later sends shows up in
their latency too (no coordinated omission). Prints one JSON document: per request the
incident id, the HTTP status and the accept latency.

Usage: python scripts/bench_load.py --url URL --rate R --seconds S [--api-key K] [--tag T]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import uvloop

from incidentflow_tools.sandbox import sample_incident

# `wait`: the API's default path, answered 201 once the pipeline finished (or 202 after the
# wait window); `accept`: the 202 at once. The pipeline is timed from the database either way.
PREFER = {"wait": "wait", "accept": "wait=0"}


async def drive(
    url: str, rate: float, seconds: float, api_key: str | None, tag: str, path_mode: str
) -> Any:
    count = int(rate * seconds)
    headers = {"Prefer": PREFER[path_mode]}
    if api_key:
        headers["X-API-Key"] = api_key
    # (incident id, status, ms from the due time to the answer, the due time: epoch seconds)
    results: list[tuple[str | None, int, float, float]] = [(None, 0, 0.0, 0.0)] * count
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=1000)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        wall_start = time.time()

        async def one(n: int, due: float) -> None:
            # When it was due, on the wall clock: a generator running late cannot hide it.
            sent = wall_start + (due - started)
            try:
                body = sample_incident(f"bench-{tag}", n)
                async with session.post(url, json=body, headers=headers) as response:
                    body = await response.json() if response.status < 300 else {}
                    status = response.status
            except Exception as exc:  # counted as not accepted (status 0), never fatal
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                body, status = {}, 0
            answered_ms = (time.monotonic() - due) * 1000
            results[n] = (body.get("incident_id"), status, answered_ms, sent)

        tasks = []
        for n in range(count):
            due = started + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return {"rate": rate, "seconds": elapsed, "results": results, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--tag", default="run")
    parser.add_argument("--path-mode", choices=sorted(PREFER), default="wait")
    args = parser.parse_args()
    outcome = uvloop.run(
        drive(args.url, args.rate, args.seconds, args.api_key, args.tag, args.path_mode)
    )
    json.dump(outcome, sys.stdout)


if __name__ == "__main__":
    main()
