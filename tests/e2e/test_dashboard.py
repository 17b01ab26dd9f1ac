"""The admins' dashboard in Debian's Chromium: charts drawn with data points from the
durable history, updated live (no reload) as new tasks finish; and the router's
browser sessions counted in /metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis
from sqlalchemy import select

from herald.db import Transactions, create_engine, session_factory
from herald.models import Task, TaskStatus
from tests.e2e.test_browser import login
from tests.exposition_parser import parse
from tests.stack import Stack
from tests.support import eventually
from workers.control import TaskRequest, submit_tasks
from workers.queue import RedisQueue

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000


class Runner:
    """Submits diagnostic tasks to the stack's workers and waits for them to end."""

    def __init__(self, stack: Stack, redis: Redis) -> None:
        self.engine = create_engine(stack.settings)
        self.sessions = session_factory(self.engine)
        self.transactions = Transactions(self.engine)
        self.queue = RedisQueue(redis)

    async def run(self, count: int) -> None:
        requests = [TaskRequest("diag.noop") for _ in range(count)]
        ids = [s.id for s in await submit_tasks(self.transactions, self.queue, requests)]

        async def done() -> bool:
            async with self.sessions() as db:
                statuses = await db.scalars(select(Task.status).where(Task.id.in_(ids)))
                return set(statuses) == {TaskStatus.DONE}

        await eventually(done, timeout=30, what=f"{count} no-ops to run")

    async def close(self) -> None:
        self.transactions.close()
        await self.engine.dispose()


@pytest.fixture
async def runner(stack: Stack, stack_redis: Redis) -> AsyncIterator[Runner]:
    runner = Runner(stack, stack_redis)
    yield runner
    await runner.close()


@pytest.fixture
async def dashboard(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=stack.web_url)
    page = await context.new_page()
    yield page
    await context.close()


async def _total(page: Page) -> int:
    return int(await page.locator("[data-total=processed]").inner_text())


async def test_dashboard_draws_charts_and_updates_live(
    dashboard: Page, runner: Runner, stack: Stack
) -> None:
    """After some tasks, the dashboard draws every chart with data points and a
    summary for screen readers; three more tasks show in its numbers without a reload."""
    await runner.run(4)
    await login(dashboard, "ada")
    await dashboard.goto("/admin/dashboard?hours=1")
    root = dashboard.locator("[data-dashboard]")
    await expect(root).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    throughput = dashboard.locator("[data-chart=throughput]")
    await expect(throughput).to_have_attribute("data-drawn", re.compile(r"^\d+$"))
    svg = throughput.locator("svg[role=img]")
    diag = svg.locator("g[data-series='diag'] circle[data-point]")
    assert await diag.count() == 60  # a point a minute
    assert await svg.locator("g[data-series='diag'] circle:not([data-point='0'])").count() >= 1
    await expect(throughput.locator("[data-field=summary]")).to_contain_text("diag: latest")
    durations = dashboard.locator("[data-chart=durations]")
    await expect(durations.locator("g[data-kind='diag.noop'] rect[data-point]")).to_have_count(3)
    await expect(durations.locator("[data-field=summary]")).to_contain_text("diag.noop: p50")
    depth = dashboard.locator("[data-chart=depth] svg[role=img]")
    await expect(depth.locator("g[data-series='diag'] circle[data-point]")).not_to_have_count(0)
    await dashboard.evaluate("window.__heraldNoReload = true")
    before = await _total(dashboard)
    assert before >= 4

    await runner.run(3)
    await dashboard.wait_for_function(
        "least => Number(document.querySelector('[data-total=processed]').textContent) >= least",
        arg=before + 3,
        timeout=LIVE_TIMEOUT,
    )
    table = dashboard.locator("table[data-table=throughput]")
    assert await table.locator("tbody tr").count() == 60
    assert await dashboard.evaluate("window.__heraldNoReload === true")
    await dashboard.screenshot(path=str(stack.log_dir / "admin-dashboard.png"), full_page=True)


async def test_metrics_count_the_routers_browser_sessions(dashboard: Page, stack: Stack) -> None:
    """With a page joined to the router, router auth's next sweep records its node's
    browser sessions, which /metrics (scraped from this machine) reports."""
    await login(dashboard, "ada")
    await dashboard.goto("/admin/queues")
    await expect(dashboard.locator("[data-queues]")).to_have_attribute(
        "data-live", "1", timeout=LIVE_TIMEOUT
    )

    async def counted() -> bool:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{stack.web_url}/metrics") as response,
        ):
            assert response.status == 200
            family = parse(await response.text())["herald_wamp_sessions"]
        return any(value >= 1 for _, value in family.labelled())

    # Router auth sweeps (and counts) every 15 s.
    await eventually(counted, timeout=40, what="the router's sessions in /metrics")
