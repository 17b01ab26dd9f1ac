"""Failure alerts in Debian's Chromium: a task that fails for good shows, live, as a
flash on an admin's open page, with a button to the task."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis

from herald.db import Transactions, create_engine
from tests.e2e.test_browser import login
from tests.stack import Stack
from workers.control import TaskRequest, submit_tasks
from workers.queue import RedisQueue

pytestmark = pytest.mark.browser

ALERT_TIMEOUT = 30_000


@pytest.fixture
async def admin_page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=stack.web_url)
    page = await context.new_page()
    yield page
    await context.close()


async def test_a_failing_task_flashes_on_an_open_admin_page(
    admin_page: Page, stack: Stack, stack_redis: Redis
) -> None:
    """Ada has the Queues screen open; a task fails its three attempts; the alert
    appears on her page without a reload, naming the task and linking to it."""
    await login(admin_page, "ada")
    await admin_page.goto("/admin/queues")
    await expect(admin_page.locator("body")).to_have_attribute("data-live", "1", timeout=15_000)
    await admin_page.evaluate("window.__heraldNoReload = true")
    engine = create_engine(stack.settings)
    transactions = Transactions(engine)
    try:
        [task] = await submit_tasks(
            transactions,
            RedisQueue(stack_redis),
            [TaskRequest("diag.sleep", {"seconds": 0, "fail": True})],
        )
    finally:
        transactions.close()
        await engine.dispose()
    link = f"a.button[href='/tasks/{task.id}']"
    button = admin_page.locator(f"#flash .flash {link}")
    await expect(button).to_be_visible(timeout=ALERT_TIMEOUT)
    await expect(button).to_have_text("Open the task")
    flash = admin_page.locator("#flash .flash", has=admin_page.locator(link))
    await expect(flash).to_have_class("flash flash-warning")
    await expect(flash).to_contain_text(f"Task {task.id} (diag.sleep, queue diag) failed for good")
    assert await admin_page.evaluate("window.__heraldNoReload === true")
