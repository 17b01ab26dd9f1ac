"""The task pages in Debian's Chromium: an admin's Background Tasks screen follows a
task to done without a reload and narrows by filter; a failed task's page shows its
traceback and Retry puts it back; a user's My tasks shows their task's progress live
and cancels it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import Transactions, create_engine, session_factory
from herald.models import User
from tests.e2e.test_browser import login
from tests.stack import QueueSwitch, Stack
from workers.control import TaskRequest, submit_tasks
from workers.diag import DIAG_QUEUE
from workers.queue import RedisQueue

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000
RUN_TIMEOUT = 60_000


@dataclass
class Tasks:
    """Submits tasks to the stack as the CLI does, and holds the diag queue."""

    engine: AsyncEngine
    redis: Redis
    diag: QueueSwitch

    async def user_id(self, username: str) -> int:
        async with session_factory(self.engine)() as db:
            found = await db.scalar(select(User.id).where(User.username == username))
        assert found is not None
        return found

    async def submit(self, kind: str, params: dict[str, object], owner: str) -> int:
        transactions = Transactions(self.engine)
        try:
            (done,) = await submit_tasks(
                transactions,
                RedisQueue(self.redis),
                [TaskRequest(kind, params, owner_id=await self.user_id(owner))],
            )
        finally:
            transactions.close()
        return done.id


@pytest.fixture
async def tasks(stack: Stack, stack_redis: Redis) -> AsyncIterator[Tasks]:
    engine = create_engine(stack.settings)
    diag = QueueSwitch(session_factory(engine), RedisQueue(stack_redis), DIAG_QUEUE)
    try:
        yield Tasks(engine, stack_redis, diag)
    finally:
        await diag.resume()
        await engine.dispose()


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(base_url=stack.web_url)
    yield context
    await context.close()


async def open_live(context: BrowserContext, username: str, path: str) -> Page:
    """``path`` open for ``username``, its live list or task subscribed; reloads flagged."""
    page = await context.new_page()
    await login(page, username)
    await page.goto(path)
    await expect(page.locator("[data-task-list], [data-task-detail]")).to_have_attribute(
        "data-live", "1", timeout=LIVE_TIMEOUT
    )
    await page.evaluate("window.__heraldNoReload = true")
    return page


async def test_an_admins_screen_follows_a_task_to_done_without_reload(
    context: BrowserContext, tasks: Tasks
) -> None:
    """A task shown while queued turns running then done in place, progress bar at
    100%; a task submitted later is offered as "1 new task" instead of moving rows."""
    await tasks.diag.pause()
    task_id = await tasks.submit("diag.sleep", {"seconds": 1}, owner="bob")
    page = await open_live(context, "ada", "/tasks?queue=diag")
    row = page.locator(f"tr[data-task-id='{task_id}']")
    await expect(row.locator("[data-field=status] .badge")).to_have_text("queued")
    await expect(row.locator("form[data-task-action=cancel]")).to_be_visible()

    await tasks.diag.resume()
    await expect(row.locator("[data-field=status] .badge")).to_have_text(
        "done", timeout=RUN_TIMEOUT
    )
    await expect(row.locator("[data-field=progress]")).to_have_text("100%")
    await expect(row.locator("[data-field=bar]")).to_have_attribute("value", "100")
    await expect(row.locator("[data-field=finished_at] time")).to_have_count(1)
    await expect(row.locator("[data-field=duration]")).to_have_text(re.compile(r"\d.* s$"))
    await expect(row.locator("[data-field=attempts]")).to_have_text("1/3")
    await expect(row.locator("form[data-task-action=cancel]")).to_be_hidden()

    first_row = await page.locator("tr[data-task-id]").first.get_attribute("data-task-id")
    await tasks.submit("diag.noop", {}, owner="bob")
    notice = page.locator("[data-field=new-tasks]")
    await expect(notice).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(notice).to_have_text("1 new task — show")
    assert await page.locator("tr[data-task-id]").first.get_attribute("data-task-id") == first_row
    assert await page.evaluate("window.__heraldNoReload === true")
    await notice.get_by_role("link").click()
    await expect(page).to_have_url(re.compile(r"/tasks\?queue=diag$"))
    await expect(notice).to_be_hidden()


async def test_filters_narrow_the_list(context: BrowserContext, tasks: Tasks) -> None:
    """Choosing a status and an owner in the filter form gives a link to exactly the
    tasks that match."""
    await tasks.diag.pause()
    waiting = await tasks.submit("diag.noop", {}, owner="alice")
    page = await context.new_page()
    await login(page, "ada")
    await page.goto("/tasks")
    await expect(page.locator(f"tr[data-task-id='{waiting}']")).to_have_count(1)
    form = page.get_by_role("search", name="Filter tasks")
    await form.get_by_label("Status").select_option("queued")
    await form.get_by_label("Owner").fill("alice")
    await form.get_by_label("Kind").select_option("diag.noop")
    await form.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=queued.*kind=diag.noop.*owner=alice"))
    rows = page.locator("tr[data-task-id]")
    await expect(rows.first).to_be_visible()
    for status in await rows.locator("[data-field=status] .badge").all_inner_texts():
        assert status == "queued"
    await expect(page.locator(f"tr[data-task-id='{waiting}']")).to_have_count(1)
    await form.get_by_label("Status").select_option("failed")
    await form.get_by_role("button", name="Filter").click()
    await expect(page.locator(f"tr[data-task-id='{waiting}']")).to_have_count(0)


async def test_a_failed_task_shows_its_traceback_and_retry_puts_it_back(
    context: BrowserContext, tasks: Tasks
) -> None:
    """A diag task that fails for good shows its traceback on its page; Retry queues it
    again (a "retried" row in the timeline), and it runs its attempts again, live."""
    task_id = await tasks.submit("diag.sleep", {"seconds": 0, "fail": True}, owner="bob")
    page = await open_live(context, "ada", f"/tasks/{task_id}")
    status = page.locator("[data-task-detail] [data-field=status] .badge")
    await expect(status).to_have_text("failed", timeout=RUN_TIMEOUT)
    traceback = page.locator("pre[data-field=traceback]")
    await expect(traceback).to_be_visible()
    await expect(traceback).to_contain_text("Traceback (most recent call last)")
    await expect(traceback).to_contain_text("RuntimeError: diag.sleep asked to fail (attempt 3)")
    timeline = page.locator("[data-field=events] tr")
    await expect(timeline).to_have_count(6)

    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("[data-field=action-status]")).to_have_text(
        f"Task {task_id} is queued again."
    )
    await expect(page.locator("[data-field=events]")).to_contain_text(
        "retried", timeout=LIVE_TIMEOUT
    )
    # It runs again and, told to fail, fails again after its three fresh attempts.
    await expect(timeline).to_have_count(13, timeout=RUN_TIMEOUT)
    await expect(status).to_have_text("failed")
    await expect(page.locator("[data-field=attempts]")).to_have_text("3/3")
    assert await page.evaluate("window.__heraldNoReload === true")


async def test_my_tasks_show_progress_live_and_cancel_a_long_task(
    context: BrowserContext, tasks: Tasks
) -> None:
    """A user's long diag task shows its progress rising on My tasks, and Cancel stops
    it on its worker: the row ends cancelled, live."""
    task_id = await tasks.submit("diag.sleep", {"seconds": 30}, owner="alice")
    page = await open_live(context, "alice", "/tasks")
    row = page.locator(f"tr[data-task-id='{task_id}']")
    await expect(row.locator("[data-field=status] .badge")).to_have_text(
        "running", timeout=RUN_TIMEOUT
    )
    await expect(row.locator("[data-field=progress]")).to_have_text(
        re.compile(r"^[1-9]\d*%$"), timeout=LIVE_TIMEOUT
    )
    await expect(row.locator("[data-field=detail]")).to_contain_text("slept")

    await row.get_by_role("button", name="Cancel").click()
    await expect(page.locator("[data-field=action-status]")).to_contain_text(
        "told to stop", timeout=LIVE_TIMEOUT
    )
    await expect(row.locator("[data-field=status] .badge")).to_have_text(
        "cancelled", timeout=LIVE_TIMEOUT
    )
    await expect(row.locator("form[data-task-action=cancel]")).to_be_hidden()
    assert await page.evaluate("window.__heraldNoReload === true")


async def test_the_owner_downloads_a_reports_output_from_its_page(
    context: BrowserContext, stack: Stack
) -> None:
    """A report run through POST /api/tasks ends with its file on the task's page, and
    the link downloads it under its name."""
    page = await context.new_page()
    await login(page, "ada")
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    answer = await page.request.post(
        "/api/tasks",
        data={"kind": "reports.queue_stats", "params": {"days": 1}, "mode": "immediate"},
        headers={"X-CSRF-Token": csrf or ""},
    )
    assert answer.status == 202, await answer.text()
    task = await answer.json()
    await page.goto(task["url"])
    link = page.locator("[data-task-detail] a[data-field=download]")
    await expect(link).to_be_visible(timeout=RUN_TIMEOUT)
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename.endswith(".csv")
    path = await download.path()
    assert path is not None and path.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 BOM
