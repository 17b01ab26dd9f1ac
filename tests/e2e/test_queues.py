"""The Queues screen in Debian's Chromium: an admin pauses a queue and changes its cap;
every open Queues screen shows it live (no reload), from the change's announcement."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import create_engine, session_factory
from herald.models import QueueSetting
from tests.e2e.test_browser import login
from tests.stack import Stack
from tests.support import eventually
from workers.queue import RedisQueue
from workers.queue_settings import update_queue

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000
QUEUE = "diag"


@pytest.fixture
async def stack_engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(stack.settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def admin_pages(browser: Browser, stack: Stack) -> AsyncIterator[list[Page]]:
    """Two admins' Queues screens, live."""
    contexts: list[BrowserContext] = [
        await browser.new_context(base_url=stack.web_url) for _ in range(2)
    ]
    pages = []
    try:
        for context in contexts:
            page = await context.new_page()
            await login(page, "ada")
            await page.goto("/admin/queues")
            await expect(page.locator("[data-queues]")).to_have_attribute(
                "data-live", "1", timeout=LIVE_TIMEOUT
            )
            await page.evaluate("window.__heraldNoReload = true")
            pages.append(page)
        yield pages
        for page in pages:
            assert await page.evaluate("window.__heraldNoReload === true")
    finally:
        for context in contexts:
            await context.close()


async def test_pausing_a_queue_shows_on_every_open_queues_screen(
    admin_pages: list[Page], stack: Stack, stack_engine: AsyncEngine, stack_redis: Redis
) -> None:
    """Ada pauses diag on one screen: both screens show it paused, the button becomes
    Resume; a cap set on one shows on the other; resuming shows running again."""
    acting, watching = admin_pages
    sessions = session_factory(stack_engine)
    try:
        row = acting.locator(f"tr[data-queue='{QUEUE}']")
        await expect(row.locator("[data-field=state]")).to_have_text("running")
        await row.get_by_role("button", name="Pause").click()
        for page in (acting, watching):
            other = page.locator(f"tr[data-queue='{QUEUE}']")
            await expect(other).to_have_attribute("data-state", "paused", timeout=LIVE_TIMEOUT)
            await expect(other.locator("[data-field=state]")).to_have_text("paused")
            await expect(other.locator("[data-field=pause-button]")).to_have_text("Resume")

        async def paused_in_db() -> bool:
            async with sessions() as db:
                setting = await db.get(QueueSetting, QUEUE)
            return setting is not None and setting.paused

        await eventually(paused_in_db, timeout=5, what="the pause to be stored")

        await row.locator("input[name=max_active]").fill("2")
        await row.get_by_role("button", name="Save").click()
        await expect(row.locator("[data-field=row-status]")).to_have_text("Saved.")
        watched = watching.locator(f"tr[data-queue='{QUEUE}']")
        await expect(watched.locator("[data-field=max_active]")).to_have_text(
            "2", timeout=LIVE_TIMEOUT
        )
        await expect(watched.locator("input[name=max_active]")).to_have_value("2")

        await row.locator("input[name=window]").fill("Mon-Fri 25:00-08:00")
        await row.get_by_role("button", name="Save").click()
        await expect(row.locator("[data-field=row-status]")).to_contain_text("is not a time of day")

        await watched.get_by_role("button", name="Resume").click()
        await expect(row).to_have_attribute("data-state", "running", timeout=LIVE_TIMEOUT)
        await acting.screenshot(path=str(stack.log_dir / "queues-screen.png"), full_page=True)
    finally:
        # The stack is shared: leave the queue as the other tests expect it.
        await update_queue(
            sessions, RedisQueue(stack_redis), QUEUE, paused=False, max_active=None, window=None
        )
