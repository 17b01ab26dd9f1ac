"""In Debian's Chromium, driven by Playwright: a student uploads through the form and
watches every step complete live, without the page reloading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.documents import make_pdf
from tests.stack import QueueSwitch, Stack
from workers.pipeline import SUBMISSION_STEPS

pytestmark = pytest.mark.browser


@pytest.fixture
async def page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=stack.web_url)
    page = await context.new_page()
    yield page
    await context.close()


async def login(page: Page, username: str) -> None:
    await page.goto("/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", "demo")
    await page.click("form button[type=submit]")
    await page.wait_for_url("**/")


async def test_upload_form_shows_every_step_completing_live(
    page: Page, stack: Stack, first_step_queue: QueueSwitch, tmp_path: Path
) -> None:
    """A PDF upload: the submission page fills its progress bar to 100% live while the
    workers run, and the similarity result and the preview image appear without reload."""
    await login(page, "alice")
    assignments = await (await page.request.get("/api/assignments")).json()
    await page.goto(f"/assignments/{assignments[0]['id']}")
    essay = tmp_path / "essay.pdf"
    essay.write_bytes(make_pdf("My essay\n\n" + "Queues keep deadline day calm. " * 200))
    # Hold the first queue so the page is open and live before any work happens.
    await first_step_queue.pause()
    try:
        await page.set_input_files("input[type=file][name=file]", str(essay))
        await page.click("form[enctype='multipart/form-data'] button[type=submit]")
        await page.wait_for_url("**/submissions/*")
        await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=15_000)
        bar = page.get_by_role("progressbar")
        await expect(bar).to_have_attribute("aria-valuenow", "0")
        # A marker that only survives if the page is never reloaded.
        await page.evaluate("window.__heraldNoReload = true")
    finally:
        await first_step_queue.resume()

    await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    for step in SUBMISSION_STEPS:
        row = page.locator(f"[data-step='{step.name}']")
        await expect(row).to_have_attribute("data-status", "done")
    similarity = page.locator("[data-step='plagiarism'] [data-field=detail]")
    await expect(similarity).to_contain_text("Similarity")
    preview = page.locator("#preview-image")
    await expect(page.locator("#preview")).to_be_visible(timeout=15_000)
    await page.wait_for_function("() => document.getElementById('preview-image').naturalWidth > 0")
    assert await preview.evaluate("img => img.naturalHeight > img.naturalWidth")  # a page
    assert await page.evaluate("window.__heraldNoReload === true")
    await page.screenshot(path=str(stack.log_dir / "submission-page.png"), full_page=True)


async def test_signing_out_in_one_tab_closes_the_live_connection_of_the_other(
    browser: Browser, stack: Stack
) -> None:
    """Two tabs of one login: signing out in one, the router closes the other's WAMP
    session at once, and that page says it is signed out instead of reconnecting."""
    context = await browser.new_context(base_url=stack.web_url)
    try:
        watching = await context.new_page()
        await login(watching, "bob")
        await expect(watching.locator("body")).to_have_attribute("data-live", "1", timeout=15_000)
        other_tab = await context.new_page()
        await other_tab.goto("/")
        await other_tab.click("form[action='/logout'] button[type=submit]")
        await other_tab.wait_for_url("**/login*")
        # No reload, no navigation: the live state changes because the router killed it.
        await expect(watching.locator("body")).to_have_attribute(
            "data-live-state", "signed-out", timeout=15_000
        )
        await expect(watching.locator("#live-state")).to_have_attribute("data-state", "signed-out")
    finally:
        await context.close()


async def test_markers_list_follows_each_submission_live(
    browser: Browser, stack: Stack, first_step_queue: QueueSwitch
) -> None:
    """A marker's assignment page shows a held submission, then its status and progress
    change live to complete once the workers run it, without a reload."""
    student = await browser.new_context(base_url=stack.web_url)
    marker = await browser.new_context(base_url=stack.web_url)
    try:
        alice = await student.new_page()
        await login(alice, "alice")
        assignment = (await (await alice.request.get("/api/assignments")).json())[0]["id"]
        csrf = await alice.get_attribute("meta[name=csrf-token]", "content")
        await first_step_queue.pause()
        upload = await alice.request.post(
            f"/api/assignments/{assignment}/submissions",
            multipart={
                "file": {"name": "live.txt", "mimeType": "text/plain", "buffer": b"Live list.\n"}
            },
            headers={"X-CSRF-Token": csrf or ""},
        )
        assert upload.status == 202, await upload.text()
        submission = (await upload.json())["id"]

        mark = await marker.new_page()
        await login(mark, "mark")
        await mark.goto(f"/assignments/{assignment}")
        row = mark.locator(f"table[data-live-list] tr[data-submission-id='{submission}']")
        await expect(row.locator(".badge")).to_have_text("received")
        await expect(mark.locator("body")).to_have_attribute("data-live", "1", timeout=15_000)
        await mark.evaluate("window.__heraldNoReload = true")
        await first_step_queue.resume()
        await expect(row.locator(".badge")).to_have_text("complete", timeout=30_000)
        await expect(row.locator("[data-field=progress]")).to_have_text("100%")
        assert await mark.evaluate("window.__heraldNoReload === true")
    finally:
        await first_step_queue.resume()
        await student.close()
        await marker.close()
