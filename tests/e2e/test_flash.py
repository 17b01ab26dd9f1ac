"""Flash messages in Debian's Chromium: live delivery, auto-hide, seen only once on
screen, shown again on the next page view if missed, modal, and several tabs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis
from sqlalchemy import select

from herald.db import create_engine, session_factory
from herald.events import EventPublisher
from herald.flash import Flash, send_flash
from herald.models import Message, User
from tests.e2e.test_browser import login
from tests.stack import Stack
from tests.support import eventually

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000


class Flasher:
    """Sends flashes as the backend does and reads their acknowledgement."""

    def __init__(self, stack: Stack, redis: Redis) -> None:
        self.engine = create_engine(stack.settings)
        self.sessions = session_factory(self.engine)
        self.publisher = EventPublisher(redis)

    async def send(self, username: str, flash: Flash) -> int:
        async with self.sessions() as db:
            user_id = await db.scalar(select(User.id).where(User.username == username))
        assert user_id is not None
        (message_id,) = await send_flash(self.sessions, self.publisher, [user_id], flash)
        return message_id

    async def acked(self, message_id: int) -> bool:
        async with self.sessions() as db:
            return (
                await db.scalar(select(Message.acked_at).where(Message.id == message_id))
                is not None
            )


@pytest.fixture
async def flasher(stack: Stack, stack_redis: Redis) -> AsyncIterator[Flasher]:
    flasher = Flasher(stack, stack_redis)
    yield flasher
    await flasher.engine.dispose()


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(base_url=stack.web_url)
    yield context
    await context.close()


async def _live_page(context: BrowserContext, username: str) -> Page:
    page = await context.new_page()
    await login(page, username)
    await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    return page


def _flash(page: Page, message_id: int):  # type: ignore[no-untyped-def]
    return page.locator(f"[data-message-id='{message_id}']")


async def test_live_flash_hides_itself_and_counts_as_seen(
    context: BrowserContext, flasher: Flasher
) -> None:
    page = await _live_page(context, "alice")
    message = await flasher.send(
        "alice", Flash("Your essay is in <b>safe</b> hands", level="success", autohide=4)
    )
    shown = _flash(page, message)
    await expect(shown).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(shown.locator(".flash-text")).to_have_text("Your essay is in <b>safe</b> hands")
    await expect(shown).to_have_count(0, timeout=LIVE_TIMEOUT)  # hid itself after 4 s
    assert await flasher.acked(message)


async def test_flash_missed_while_away_shows_on_the_next_page_view(
    context: BrowserContext, flasher: Flasher
) -> None:
    """Sent while no page is open: the next page shows it; once seen it stops coming back."""
    page = await _live_page(context, "bob")
    await page.close()
    message = await flasher.send("bob", Flash("Grades for Essay 1 are out", link="/"))
    assert not await flasher.acked(message)
    page = await context.new_page()
    await page.goto("/")
    await expect(_flash(page, message)).to_be_visible()
    await page.wait_for_function(
        f"() => document.querySelector('[data-message-id=\"{message}\"]').dataset.acked === '1'",
        timeout=LIVE_TIMEOUT,
    )

    await eventually(lambda: flasher.acked(message), timeout=15, what="the acknowledgement")
    # The acknowledgement's echo takes it down in other tabs, not in the one being read.
    await expect(_flash(page, message)).to_be_visible()
    await page.reload()
    await expect(_flash(page, message)).to_have_count(0)


async def test_modal_flash_stays_over_the_page_until_dismissed(
    context: BrowserContext, flasher: Flasher
) -> None:
    page = await _live_page(context, "alice")
    message = await flasher.send(
        "alice", Flash("The building closes at 18:00", level="urgent", modal=True)
    )
    dialog = page.locator("dialog.flash-modal")
    await expect(dialog).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(dialog).to_contain_text("The building closes at 18:00")
    await dialog.locator("[data-dismiss]").click()
    await expect(dialog).to_have_count(0)
    assert await _flash(page, message).count() == 0


async def test_dismissed_in_one_tab_gone_from_the_other(
    browser: Browser, stack: Stack, flasher: Flasher
) -> None:
    context = await browser.new_context(base_url=stack.web_url)
    try:
        first = await _live_page(context, "mark")
        second = await context.new_page()
        # A tab in the background, as a second tab is: its document is hidden, so it
        # never counts a flash as seen itself (headless Chromium shows every page).
        await second.add_init_script(
            "Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});"
        )
        await second.goto("/")
        await expect(second.locator("body")).to_have_attribute(
            "data-live", "1", timeout=LIVE_TIMEOUT
        )
        message = await flasher.send("mark", Flash("Three essays await marking", link="/"))
        await expect(_flash(first, message)).to_be_visible(timeout=LIVE_TIMEOUT)
        await expect(_flash(second, message)).to_be_visible(timeout=LIVE_TIMEOUT)
        await _flash(first, message).locator("[data-dismiss]").click()
        await expect(_flash(second, message)).to_have_count(0, timeout=LIVE_TIMEOUT)
    finally:
        await context.close()
