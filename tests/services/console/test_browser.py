"""The console in Debian's Chromium, driven by Playwright: what a person does, checked through
the API; axe-core (from npm, scripts/ensure-test-tools.sh) on every page; and the screenshots
in docs/console/, taken here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from incidentflow_tools.stack import REPO_ROOT
from tests.services.console.conftest import (
    KEYS,
    OPERATE_KEY,
    READ_KEY,
    SUBMIT_KEY,
    a_classified_incident,
    serving,
)
from tests.services.ingest.conftest import ingest_settings, serve

CHROMIUM = "/usr/bin/chromium"
# As the machine's probe runs it: without the background-networking flags Chromium keeps
# trying Google's hosts, which this closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = REPO_ROOT / "var" / "test-tools" / "axe-core-4.14.1" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / "docs" / "console"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 800}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/ensure-test-tools.sh"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, viewport: dict[str, int]) -> Page:
    """A page of its own (cookies apart). The console's CSP refuses inline scripts, which is
    how axe-core is injected: the tests' pages let it in."""
    context = await browser.new_context(viewport=viewport, bypass_csp=True)  # type: ignore[arg-type]
    return await context.new_page()


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now."""
    assert AXE.exists(), "axe-core is missing: scripts/ensure-test-tools.sh"
    await page.add_script_tag(path=str(AXE))
    results = await page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"])}
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def checked(page: Page, name: str) -> None:
    """No serious accessibility violation, and the page's screenshot for the docs."""
    assert await serious_violations(page) == [], name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/incidents")
    assert "/sign-in" in page.url
    await page.get_by_label("API key or token").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/incidents")


async def test_an_operator_works_an_incident_in_the_browser(
    browser: Browser, rabbitmq_url: str, console_database: str, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Two identical charges from the same café")
    other = await a_classified_incident(pool, "My account is locked since this morning")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE incidents SET classification = 'account_locked' WHERE id = $1", other
        )
    api_settings = ingest_settings(rabbitmq_url, console_database, api_keys=KEYS)
    async with (
        serving(console_database, KEYS, rabbitmq_url=rabbitmq_url) as console,
        serve(api_settings) as api_url,
        httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": OPERATE_KEY}) as api,
    ):
        base = str(console.base_url).rstrip("/")
        page = await new_page(browser, DESKTOP)
        await page.goto(f"{base}/sign-in")
        await checked(page, "sign-in")
        await sign_in(page, base, OPERATE_KEY)

        # A customer writes while the list is open: the row appears without a reload.
        posted = await api.post(
            "/api/incidents",
            headers={"X-API-Key": SUBMIT_KEY},
            json={
                "customer_id": "live-1",
                "channel": "chat",
                "email": "live@example.com",
                "message": "The app says my transfer failed but the money is gone",
            },
        )
        assert posted.status_code in (201, 202), posted.text
        live_id = posted.json()["incident_id"]
        await page.wait_for_selector(f'a[href="/incidents/{live_id}"]', timeout=15_000)
        assert page.url.removeprefix(base) == "/incidents"  # still the page first drawn

        await page.get_by_label("Category").select_option("duplicate_payment")
        await page.get_by_role("button", name="Filter").click()
        await page.wait_for_load_state()
        assert str(incident_id) in await page.content()
        assert str(other) not in await page.content()
        await checked(page, "incidents")

        await page.locator(f'a[href="/incidents/{incident_id}"]').click()
        await page.wait_for_url(f"{base}/incidents/{incident_id}")
        await checked(page, "incident")

        await page.get_by_label("Category").select_option("other")
        await page.get_by_label("Note").fill("a café's double charge, not ours")
        await page.get_by_role("button", name="Correct category").click()
        await page.wait_for_load_state()
        await page.get_by_role("button", name="Resolve").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("button", name="Reopen").is_visible()

        # The same form without its CSRF token, as another site's page would post it.
        refused = await page.evaluate(
            """async (url) => (await fetch(url, {method: "POST",
                body: new URLSearchParams({status: "open"})})).status""",
            f"{base}/incidents/{incident_id}/status",
        )
        assert refused == 403

        state = (await api.get(f"/api/incidents/{incident_id}")).json()
        assert (state["classification"], state["status"]) == ("other", "resolved")
        outcomes = [a["outcome"] for a in state["audit"]]
        assert "classification corrected by key:agents" in outcomes
        assert "resolved by key:agents" in outcomes
        assert state["corrections"][0]["note"] == "a café's double charge, not ours"

        await page.goto(f"{base}/review")
        await checked(page, "review-queue")

        await page.goto(f"{base}/overview")
        await page.wait_for_function("typeof Chart !== 'undefined'")
        assert "to review" in await page.content()
        await checked(page, "overview")

        await page.goto(f"{base}/dead-letters")
        assert "Dead letters" in await page.title()
        await checked(page, "dead-letters")

        narrow = await new_page(browser, PHONE)
        await sign_in(narrow, base, OPERATE_KEY)
        await checked(narrow, "incidents-360px")
        # Readable at 360 px: nothing wider than the screen.
        assert await narrow.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def test_a_read_key_in_the_browser_changes_nothing(
    browser: Browser, console_database: str, pool: asyncpg.Pool
) -> None:
    incident_id = await a_classified_incident(pool, "Charged in dollars, not euros")
    async with serving(console_database, KEYS) as console:
        base = str(console.base_url).rstrip("/")
        page = await new_page(browser, DESKTOP)
        await sign_in(page, base, READ_KEY)
        await page.goto(f"{base}/incidents/{incident_id}")
        assert await page.get_by_role("button", name="Resolve").count() == 0
        # The form a read key is not shown, posted anyway with this session's token.
        csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
        status = await page.evaluate(
            """async ([url, csrf]) => (await fetch(url, {method: "POST",
                body: new URLSearchParams({status: "resolved", csrf})})).status""",
            [f"{base}/incidents/{incident_id}/status", csrf],
        )
        assert status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) == (
            "open"
        )
