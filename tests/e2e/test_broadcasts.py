"""Broadcasts in Debian's Chromium: an urgent one arrives live as a modal; a course's
one missed while away shows on the next page view, to its members only; seen in one
tab, gone from the other; and an admin sends one through the form."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect
from redis.asyncio import Redis
from sqlalchemy import delete, func, select

from herald.broadcasts import Notice, send_broadcast
from herald.db import create_engine, session_factory
from herald.events import EventPublisher
from herald.models import Broadcast, BroadcastAck, Course, CourseRole, Enrolment, User
from herald.passwords import hash_password
from tests.e2e.test_browser import login
from tests.e2e.test_flash import LIVE_TIMEOUT
from tests.stack import Stack
from tests.support import eventually

pytestmark = pytest.mark.browser


class Broadcaster:
    """Sends broadcasts as the backend does, reads who has seen them, and sets up a
    course of one member for the audience tests."""

    def __init__(self, stack: Stack, redis: Redis) -> None:
        self.engine = create_engine(stack.settings)
        self.sessions = session_factory(self.engine)
        self.publisher = EventPublisher(redis)
        self.first_id = 0

    async def start(self) -> None:
        async with self.sessions() as db:
            self.first_id = (await db.scalar(select(func.max(Broadcast.id)))) or 0

    async def send(self, notice: Notice) -> int:
        sent = await send_broadcast(self.sessions, self.publisher, notice, sender_id=None)
        return int(sent["id"])

    async def user_id(self, username: str) -> int:
        async with self.sessions() as db:
            found = await db.scalar(select(User.id).where(User.username == username))
        assert found is not None
        return found

    async def acked(self, broadcast_id: int, username: str) -> bool:
        user_id = await self.user_id(username)
        async with self.sessions() as db:
            found = await db.get(BroadcastAck, (broadcast_id, user_id))
        return found is not None

    async def course_with_member(self) -> tuple[int, str]:
        """A new course and a new student in it (password ``demo``)."""
        suffix = secrets.token_hex(3)
        async with self.sessions.begin() as db:
            course = Course(code=f"E2E-{suffix}", title="Broadcast audience")
            user = User(
                username=f"carol-{suffix}",
                display_name="Carol Student",
                password_hash=hash_password("demo"),
            )
            db.add_all([course, user, Enrolment(user=user, course=course, role=CourseRole.STUDENT)])
            await db.flush()
            return course.id, user.username

    async def clean_up(self) -> None:
        # The stack is shared: no broadcast of a test may show on another test's pages.
        async with self.sessions.begin() as db:
            await db.execute(delete(Broadcast).where(Broadcast.id > self.first_id))


@pytest.fixture
async def broadcaster(stack: Stack, stack_redis: Redis) -> AsyncIterator[Broadcaster]:
    broadcaster = Broadcaster(stack, stack_redis)
    await broadcaster.start()
    try:
        yield broadcaster
    finally:
        await broadcaster.clean_up()
        await broadcaster.engine.dispose()


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(base_url=stack.web_url)
    yield context
    await context.close()


async def _live_page(
    context: BrowserContext, username: str | None, *, hidden: bool = False
) -> Page:
    """A page of ``username`` (signed in here), or another tab of the context's login."""
    page = await context.new_page()
    if hidden:
        # A tab in the background, as a second tab is: its document is hidden, so it
        # never counts a broadcast as seen itself (headless Chromium shows every page).
        await page.add_init_script(
            "Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});"
        )
    if username is None:
        await page.goto("/")
    else:
        await login(page, username)
    await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    return page


def _shown(page: Page, broadcast_id: int) -> Locator:
    return page.locator(f"[data-flash-key='broadcast:{broadcast_id}']")


async def test_urgent_broadcast_arrives_live_as_a_modal(
    context: BrowserContext, broadcaster: Broadcaster
) -> None:
    """An urgent broadcast to everyone opens over a live page as text; dismissed, it is
    gone and recorded as seen."""
    page = await _live_page(context, "alice")
    broadcast = await broadcaster.send(
        Notice("Campus closes at <b>16:00</b> today", level="urgent", link="/messages")
    )
    dialog = page.locator("dialog.flash-modal")
    await expect(dialog).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(dialog.locator(".flash-text")).to_have_text("Campus closes at <b>16:00</b> today")
    await expect(dialog.locator("a[href='/messages']")).to_be_visible()
    await dialog.locator("[data-dismiss]").click()
    await expect(dialog).to_have_count(0)
    await expect(_shown(page, broadcast)).to_have_count(0)
    await eventually(
        lambda: broadcaster.acked(broadcast, "alice"), timeout=15, what="the acknowledgement"
    )
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    await expect(_shown(page, broadcast)).to_have_count(0)


async def test_course_broadcast_missed_while_away_shows_to_members_only(
    context: BrowserContext, browser: Browser, stack: Stack, broadcaster: Broadcaster
) -> None:
    """Sent while the member has no page open: the next page view shows it until it has
    been seen; someone not in the course gets it neither on a page nor from the API;
    and with a page open, the member's next one arrives live on course.{id}."""
    course_id, member = await broadcaster.course_with_member()
    page = await _live_page(context, member)
    await page.close()
    broadcast = await broadcaster.send(Notice("Seminar moved to room 4", course_id=course_id))
    assert not await broadcaster.acked(broadcast, member)

    page = await context.new_page()
    await page.goto("/")
    await expect(_shown(page, broadcast)).to_be_visible()
    await expect(_shown(page, broadcast).locator(".flash-text")).to_have_text(
        "Seminar moved to room 4"
    )
    await eventually(
        lambda: broadcaster.acked(broadcast, member), timeout=15, what="the acknowledgement"
    )
    # Seen: off the nav's unread count without a reload (it was the member's only one).
    await expect(page.locator("#unread-count")).to_be_hidden(timeout=LIVE_TIMEOUT)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    await expect(_shown(page, broadcast)).to_have_count(0)
    assert await page.locator("body").get_attribute("data-course-ids") == str(course_id)

    # Live, on the course's topic, now that the page is subscribed to it.
    again = await broadcaster.send(Notice("Bring a laptop", course_id=course_id))
    await expect(_shown(page, again)).to_be_visible(timeout=LIVE_TIMEOUT)

    outsider = await browser.new_context(base_url=stack.web_url)
    try:
        other = await _live_page(outsider, "alice")
        await expect(_shown(other, broadcast)).to_have_count(0)
        await expect(_shown(other, again)).to_have_count(0)
        listed = await (await other.request.get("/api/messages")).json()
        assert {item["key"] for item in listed}.isdisjoint(
            {f"broadcast:{broadcast}", f"broadcast:{again}"}
        )
    finally:
        await outsider.close()


async def test_seen_in_one_tab_gone_from_the_other(
    context: BrowserContext, broadcaster: Broadcaster
) -> None:
    """Two tabs of one login: dismissed in the first, the broadcast goes from the second."""
    first = await _live_page(context, "mark")
    second = await _live_page(context, None, hidden=True)
    broadcast = await broadcaster.send(Notice("Marking meeting at 14:00", level="warning"))
    await expect(_shown(first, broadcast)).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(_shown(second, broadcast)).to_be_visible(timeout=LIVE_TIMEOUT)
    await _shown(first, broadcast).locator("[data-dismiss]").click()
    await expect(_shown(second, broadcast)).to_have_count(0, timeout=LIVE_TIMEOUT)
    assert await broadcaster.acked(broadcast, "mark")


async def test_admin_sends_through_the_form(
    context: BrowserContext, browser: Browser, stack: Stack, broadcaster: Broadcaster
) -> None:
    """Ada fills in /admin/broadcast; the page confirms and lists it, and Bob's open page
    shows it live."""
    watcher = await browser.new_context(base_url=stack.web_url)
    try:
        bob = await _live_page(watcher, "bob")
        admin = await context.new_page()
        await login(admin, "ada")
        await admin.get_by_role("link", name="Broadcast", exact=True).click()
        await admin.wait_for_url("**/admin/broadcast")
        await admin.fill("#broadcast-text", "Exam timetable is out")
        await admin.select_option("#broadcast-audience", label="DEMO101 · Demonstrating Herald")
        await admin.select_option("#broadcast-level", "warning")
        await admin.fill("#broadcast-link", "/messages")
        await admin.select_option("#broadcast-expires", "24")
        await admin.get_by_role("button", name="Send broadcast").click()
        await admin.wait_for_url("**/admin/broadcast?sent=*")
        confirmation = admin.locator("[data-sent]")
        await expect(confirmation).to_contain_text("Sent to DEMO101")
        broadcast = int(await confirmation.get_attribute("data-sent") or "0")
        row = admin.locator(f"tr[data-broadcast-id='{broadcast}']")
        await expect(row).to_contain_text("Exam timetable is out")
        await expect(row).to_contain_text("warning")

        shown = _shown(bob, broadcast)
        await expect(shown).to_be_visible(timeout=LIVE_TIMEOUT)
        await expect(shown.locator(".flash-text")).to_have_text("Exam timetable is out")
        await expect(shown).to_have_class("flash flash-warning")
        await eventually(
            lambda: broadcaster.acked(broadcast, "bob"), timeout=15, what="bob seeing it"
        )
    finally:
        await watcher.close()
