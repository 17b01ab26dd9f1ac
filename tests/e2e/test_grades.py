"""Grades in Debian's Chromium: a marker grades on the assignment page and releases now
or at a time; the student's open submission page shows the grade and a flash live,
and the marker's counts follow, all without a reload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.test_browser import login
from tests.stack import Stack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000
PIPELINE_TIMEOUT = 60_000


@dataclass
class Classroom:
    student: Page
    marker: Page
    assignment: int
    submission: int


async def _count(page: Page, name: str) -> int:
    return int(await page.locator(f"#marking [data-count='{name}']").inner_text())


@pytest.fixture
async def classroom(browser: Browser, stack: Stack) -> AsyncIterator[Classroom]:
    """Alice's finished submission open on her screen; Mark on the assignment page in
    New York time (the release form converts the browser's local time)."""
    contexts: list[BrowserContext] = [
        await browser.new_context(base_url=stack.web_url),
        await browser.new_context(base_url=stack.web_url, timezone_id="America/New_York"),
    ]
    try:
        alice, mark = [await context.new_page() for context in contexts]
        await login(alice, "alice")
        assignment = (await (await alice.request.get("/api/assignments")).json())[0]["id"]
        csrf = await alice.get_attribute("meta[name=csrf-token]", "content")
        upload = await alice.request.post(
            f"/api/assignments/{assignment}/submissions",
            multipart={
                "file": {"name": "graded.txt", "mimeType": "text/plain", "buffer": b"Grade me.\n"}
            },
            headers={"X-CSRF-Token": csrf or ""},
        )
        assert upload.status == 202, await upload.text()
        submission = (await upload.json())["id"]
        await alice.goto(f"/submissions/{submission}")
        await expect(alice.locator("#submission-status")).to_have_text(
            "complete", timeout=PIPELINE_TIMEOUT
        )
        await expect(alice.locator("#grade")).to_have_text("Not released yet.")
        await login(mark, "mark")
        await mark.goto(f"/assignments/{assignment}")
        await expect(mark.locator("#marking")).to_have_attribute(
            "data-live", "1", timeout=LIVE_TIMEOUT
        )
        for page in (alice, mark):
            await page.evaluate("window.__heraldNoReload = true")
        yield Classroom(alice, mark, assignment, submission)
        for page in (alice, mark):
            assert await page.evaluate("window.__heraldNoReload === true")
    finally:
        for context in contexts:
            await context.close()


async def _grade(room: Classroom, grade: str) -> None:
    row = room.marker.locator(f"tr[data-submission-id='{room.submission}']")
    graded_before = await _count(room.marker, "graded")
    await row.locator("input[name=grade]").fill(grade)
    await row.locator("form[data-grade-form] button").click()
    await expect(row.locator("form[data-grade-form]")).to_have_attribute("data-saved", grade)
    await expect(row.locator("[data-field=grade-state]")).to_have_text("not released")
    # The count moves live (announced on assignment.{id}, fetched by the panel).
    await expect(room.marker.locator("#marking [data-count='graded']")).to_have_text(
        str(graded_before + 1), timeout=LIVE_TIMEOUT
    )
    # Still hidden from the student, on the page and in the API.
    await expect(room.student.locator("#grade")).to_have_text("Not released yet.")
    state = await (await room.student.request.get(f"/api/submissions/{room.submission}")).json()
    assert state["grade"] is None


async def _student_sees_grade(room: Classroom, grade: str) -> None:
    await expect(room.student.locator("#grade")).to_have_text(grade, timeout=LIVE_TIMEOUT)
    # This submission's flash (earlier tests' may still be unseen and showing too).
    button = room.student.locator(f"#flash .flash a.button[href='/submissions/{room.submission}']")
    await expect(button).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(button).to_have_text("See it")
    row = room.marker.locator(f"tr[data-submission-id='{room.submission}']")
    await expect(row.locator("[data-field=grade-state]")).to_have_text(
        "released", timeout=LIVE_TIMEOUT
    )


async def test_release_now_reaches_the_students_open_page(classroom: Classroom) -> None:
    await _grade(classroom, "A-")
    released_before = await _count(classroom.marker, "released")
    await classroom.marker.get_by_role("button", name="Release grades now").click()
    await expect(classroom.marker.locator("[data-field=marking-status]")).to_have_text(
        "Releasing the grades now."
    )
    await _student_sees_grade(classroom, "A-")
    assert await _count(classroom.marker, "released") >= released_before + 1


async def test_scheduled_release_happens_at_its_time(classroom: Classroom) -> None:
    await _grade(classroom, "B+")
    # Seconds from now, in the marker's own zone, as the browser's picker gives it.
    at = datetime.now(ZoneInfo("America/New_York")) + timedelta(seconds=6)
    form = classroom.marker.locator("form[data-release-form]")
    await expect(form.locator("[data-field=zone]")).to_have_text("(America/New_York)")
    await form.locator("input[name=at]").fill(at.strftime("%Y-%m-%dT%H:%M:%S"))
    await form.get_by_role("button", name="Schedule").click()
    await expect(classroom.marker.locator("[data-field=marking-status]")).to_contain_text(
        "Release scheduled for"
    )
    scheduled = classroom.marker.locator("#marking [data-field=scheduled] li")
    await expect(scheduled).not_to_have_count(0, timeout=LIVE_TIMEOUT)
    await _student_sees_grade(classroom, "B+")
    # Ran once, at its time: the task's row says so, and it left the scheduled list.
    await expect(scheduled).to_have_count(0, timeout=LIVE_TIMEOUT)
