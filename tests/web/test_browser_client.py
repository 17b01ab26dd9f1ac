"""herald.js in Chromium: CSP-clean boot, reconnect loop with fresh tickets, seq handling.

No router runs here (router/ is tested with Crossbar elsewhere): the WAMP URL
points at a closed port, which exercises the client's own reconnect loop.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from tests.support import free_port
from tests.web.conftest import Client, ClientFactory, Demo, login, upload_form
from workers.pipeline import SUBMISSION_STEPS

pytestmark = pytest.mark.browser

VENDOR = Path(__file__).parents[2] / "web" / "static" / "vendor" / "autobahn.min.js"


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    yield await context.new_page()
    await context.close()


async def _submission(client: Client, demo: Demo) -> int:
    csrf = await login(client, "alice")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(b"essay"),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 202
    return int((await response.json())["id"])


async def test_submission_page_live_client(
    make_client: ClientFactory, demo: Demo, page: Page
) -> None:
    """The page boots without CSP errors, keeps reconnecting with fresh tickets, and
    applies events by seq: old ones ignored, the next applied, a gap resyncs."""
    if not VENDOR.exists():
        pytest.skip("autobahn.min.js is not installed in web/static/vendor")
    dead_router = f"ws://127.0.0.1:{free_port()}/ws"
    client = await make_client(HERALD_ROUTER_PUBLIC_URL=dead_router)
    submission_id = await _submission(client, demo)

    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    tickets: list[str] = []
    resyncs: list[str] = []
    page.on(
        "request",
        lambda request: (
            tickets.append(request.url)
            if "/api/wamp/ticket" in request.url
            else resyncs.append(request.url)
            if "/api/submissions/" in request.url
            else None
        ),
    )
    base = str(client.make_url("")).rstrip("/")
    await page.goto(f"{base}/login?next=/submissions/{submission_id}")
    await page.fill("#username", "alice")
    await page.fill("#password", "demo")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/submissions/{submission_id}")

    # The router is unreachable: the client reconnects on its own, each time
    # with a new ticket.
    await page.wait_for_function("() => document.body.dataset.liveState === 'reconnecting'")
    await page.wait_for_function(
        "() => window.Herald && window.Herald.live.attempt >= 2", timeout=15_000
    )
    assert len(tickets) >= 2

    root = "[data-page=submission]"
    scan = "tr[data-step=scan]"
    apply = """(env) => window.Herald.submissionPage.onEvent(env)"""

    def event(
        seq: int, status: str, progress: int, detail: str = "", overall: int | None = 12
    ) -> dict[str, object]:
        return {
            "topic": f"submission.{submission_id}",
            "type": "step.progress",
            "seq": seq,
            "ts": "2026-11-22T10:00:00.000Z",
            "data": {
                "submission": {
                    "id": submission_id,
                    "status": "processing",
                    "progress": overall,
                    "detail": None,
                },
                "step": {
                    "name": "scan",
                    "label": "Scanning for viruses",
                    "status": status,
                    "progress": progress,
                    "detail": detail,
                    "started_at": None,
                    "finished_at": None,
                },
            },
        }

    await page.evaluate(apply, event(1, "running", 50, "<b>half</b>"))
    assert await page.get_attribute(scan, "data-status") == "running"
    assert await page.get_attribute(root, "data-submission-status") == "processing"
    assert await page.get_attribute("#overall-progress", "aria-valuenow") == "12"
    assert await page.get_by_role("progressbar").count() == 1
    detail_html = await page.inner_html(f"{scan} [data-field=detail]")
    assert detail_html == "&lt;b&gt;half&lt;/b&gt;"

    # Without an overall figure (steps run side by side) the page averages its rows:
    # scan at 60 %, every other step at 0 %.
    await page.evaluate(apply, event(2, "running", 60, overall=None))
    expected = str(round(60 / len(SUBMISSION_STEPS)))
    assert await page.get_attribute("#overall-progress", "aria-valuenow") == expected

    await page.evaluate(apply, event(1, "done", 100))  # already applied: ignored
    assert await page.get_attribute(scan, "data-status") == "running"

    assert resyncs == []
    await page.evaluate(apply, event(5, "done", 100))  # a gap: state comes from the API
    await page.wait_for_function(
        "() => document.querySelector('tr[data-step=scan]').dataset.status === 'queued'"
    )
    assert any(url.endswith(f"/api/submissions/{submission_id}") for url in resyncs)
    assert await page.evaluate("() => window.Herald.submissionPage.lastSeq") == 0
    assert problems == []


async def test_live_connection_fails_over_between_router_nodes(
    make_client: ClientFactory, demo: Demo, browser: Browser
) -> None:
    """With two router nodes named in the ticket, the page tries them in turn after each
    failed connect (a fresh ticket each time), and a tab starts at the node it used last."""
    if not VENDOR.exists():
        pytest.skip("autobahn.min.js is not installed in web/static/vendor")
    nodes = [f"ws://127.0.0.1:{free_port()}/ws", f"ws://127.0.0.1:{free_port()}/ws"]
    client = await make_client(HERALD_ROUTER_PUBLIC_URL=",".join(nodes))
    base = str(client.make_url("")).rstrip("/")

    async def attempts_of(context: BrowserContext, count: int) -> list[str]:
        page = await context.new_page()
        tried: list[str] = []
        tickets: list[str] = []
        page.on("websocket", lambda socket: tried.append(socket.url))
        page.on("request", lambda r: tickets.append(r.url) if "/api/wamp/ticket" in r.url else None)
        await page.goto(f"{base}/login")
        await page.fill("#username", "alice")
        await page.fill("#password", "demo")
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/")
        await page.wait_for_function(
            f"() => window.Herald && window.Herald.live.attempt >= {count}", timeout=20_000
        )
        assert len(tickets) >= count
        return tried[:count]

    fresh = await browser.new_context()
    try:
        tried = await attempts_of(fresh, 4)
    finally:
        await fresh.close()
    assert set(tried) == set(nodes), tried
    # Each failed connect moves on to the other node.
    assert all(a != b for a, b in itertools.pairwise(tried)), tried

    # A tab that last joined the second node starts there (sessionStorage).
    returning = await browser.new_context()
    await returning.add_init_script(f"sessionStorage.setItem('herald.router', '{nodes[1]}')")
    try:
        tried = await attempts_of(returning, 2)
    finally:
        await returning.close()
    assert tried == [nodes[1], nodes[0]], tried
