"""/docs and /redoc render without internet: every script and style they load is served by
ingest itself (a CDN is out of reach on most banks' networks), and nothing else is fetched."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.services.ingest.conftest import ingest_settings, serve

# What a page loads: <script src>, <link href>, and ReDoc's spec-url attribute.
LOADED = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""")


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
        ("/redoc", {"redoc.standalone.js"}),
    ],
)
async def test_docs_pages_load_only_what_ingest_serves(
    rabbitmq_url: str, database_url: str, page: str, expected: set[str]
) -> None:
    async with (
        serve(ingest_settings(rabbitmq_url, database_url)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        html = (await client.get(page)).text
        loaded = [a or b for a, b in LOADED.findall(html)]
        assert loaded, html
        # Nothing from another host: every URL is a path on ingest, or the empty favicon.
        assert [url for url in loaded if "//" in url] == []
        assert {url.rsplit("/", 1)[-1] for url in loaded} >= expected
        for url in loaded:
            if url.startswith("data:"):
                continue
            answer = await client.get(url)
            assert answer.status_code == 200, url
            assert len(answer.content) > 1000, url
        assert (await client.get("/openapi.json")).json()["info"]["title"]
