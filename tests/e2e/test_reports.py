"""Reports in Debian's Chromium: a marker presses "Run now" on the grades report, lands
on the task's page, sees it finish live with the download, and gets the completion
flash with its Download button."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.test_browser import login
from tests.stack import Stack

pytestmark = pytest.mark.browser

RUN_TIMEOUT = 30_000


async def test_a_marker_runs_the_grades_report_now_and_downloads_it(
    browser: Browser, stack: Stack
) -> None:
    """From /reports to /tasks/{id}: done live, the CSV downloads, the flash offers it."""
    context = await browser.new_context(base_url=stack.web_url, accept_downloads=True)
    try:
        page = await context.new_page()
        await login(page, "mark")
        await page.goto("/reports")
        card = page.locator("section[data-kind='reports.grades']")
        await card.get_by_role("button", name="Run now").click()
        await page.wait_for_url("**/tasks/*")
        task_id = int(page.url.rsplit("/", 1)[1])
        detail = page.locator("[data-task-detail]")
        await expect(detail.locator("[data-field=status]")).to_contain_text(
            "done", timeout=RUN_TIMEOUT
        )
        link = detail.locator("[data-field=download]")
        await expect(link).to_have_attribute("href", f"/api/tasks/{task_id}/output")
        async with page.expect_download() as started:
            await link.click()
        download = await started.value
        saved = await download.path()
        assert saved is not None
        data = Path(saved).read_bytes()
        assert data.startswith("\ufeffstudent,username,submission id".encode())
        assert download.suggested_filename.endswith("-grades.csv")
        flash = page.locator("#flash .flash", has_text="Your grades report for")
        await expect(flash).to_be_visible(timeout=RUN_TIMEOUT)
        await expect(flash.get_by_role("link", name="Download")).to_have_attribute(
            "href", f"/api/tasks/{task_id}/output"
        )
    finally:
        await context.close()
