"""In Debian's Chromium: the submission page survives a router restart and a seq gap.
It reconnects with a fresh ticket, re-subscribes, and resyncs from the HTTP API, so it
ends showing exactly the state it missed, without a reload and without applying any
event twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis
from sqlalchemy import update

from herald.events import EventPublisher
from herald.models import Submission, utcnow
from herald.names import EventType, seq_key, submission_topic
from tests.documents import make_pdf
from tests.e2e.client import HeraldClient
from tests.e2e.test_browser import login
from tests.stack import QueueSwitch, Stack
from tests.support import eventually
from workers.pipeline import SUBMISSION_STEPS

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000
# The page backs off up to 30 s between attempts; a router down for ~20 s can mean a
# wait of that order before its next attempt once the router is back.
RECOVERY_TIMEOUT = 60_000
PIPELINE_TIMEOUT = 60.0
STEP_NAMES = [step.name for step in SUBMISSION_STEPS]
FINISHED = ("done", "skipped")

# Records, from inside the page, every live state it shows and every change it makes to
# the submission's state: an event applied (its seq) or a resync rendered (the API's seq).
RECORDER = """() => {
  const log = window.__heraldLog = {states: [document.body.dataset.liveState], changes: []};
  new MutationObserver(() => {
    const state = document.body.dataset.liveState;
    if (log.states[log.states.length - 1] !== state) { log.states.push(state); }
  }).observe(document.body, {attributes: true, attributeFilter: ["data-live-state"]});
  const page = window.Herald.submissionPage;
  const apply = page.apply;
  const renderState = page.renderState;
  page.apply = function (envelope) {
    log.changes.push({kind: "event", seq: envelope.seq, type: envelope.type});
    return apply.call(this, envelope);
  };
  page.renderState = function (state) {
    log.changes.push({kind: "sync", seq: state.seq});
    return renderState.call(this, state);
  };
  window.__heraldNoReload = true;
}"""


@pytest.fixture
async def student(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(base_url=stack.web_url)
    yield context
    await context.close()


async def _upload(page: Page, name: str) -> int:
    """Upload a one-page PDF essay as the signed-in student; returns the submission id."""
    assignment = (await (await page.request.get("/api/assignments")).json())[0]["id"]
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    essay = make_pdf(f"{name}\n\n" + "A router restart loses no news. " * 150)
    response = await page.request.post(
        f"/api/assignments/{assignment}/submissions",
        multipart={"file": {"name": f"{name}.pdf", "mimeType": "application/pdf", "buffer": essay}},
        headers={"X-CSRF-Token": csrf or ""},
    )
    assert response.status == 202, await response.text()
    return int((await response.json())["id"])


async def _open_live(page: Page, submission_id: int) -> None:
    await page.goto(f"/submissions/{submission_id}")
    await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    # Subscribed; the resync that follows every subscribe has finished.
    await page.wait_for_function(
        "() => window.Herald.submissionPage.syncing === false", timeout=LIVE_TIMEOUT
    )
    await page.evaluate(RECORDER)


async def _page_log(page: Page) -> dict[str, Any]:
    log: dict[str, Any] = await page.evaluate("window.__heraldLog")
    return log


def _assert_nothing_applied_twice(changes: list[dict[str, Any]]) -> None:
    """Each event applied once, in seq order, and never older than the state shown."""
    shown = 0
    for change in changes:
        if change["kind"] == "event":
            assert change["seq"] > shown, (change, changes)
        else:
            assert change["seq"] >= shown, (change, changes)
        shown = max(shown, change["seq"])
    events = [c["seq"] for c in changes if c["kind"] == "event"]
    assert len(events) == len(set(events)), changes


async def _set_grade(marker: HeraldClient, submission_id: int, grade: str) -> None:
    response = await marker.http.put(
        f"/api/submissions/{submission_id}/grade",
        json={"grade": grade},
        headers={"X-CSRF-Token": marker.csrf},
    )
    assert response.status == 200, await response.text()


@contextlib.asynccontextmanager
async def _published(redis: Redis, topic: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every event published on ``topic``'s Redis channel from now on, as the bridge
    receives them: tells the test when the backend has said all it will say."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(topic)
    confirmed = await pubsub.get_message(timeout=10.0)
    assert confirmed is not None and confirmed["type"] == "subscribe", confirmed
    seen: list[dict[str, Any]] = []

    async def collect() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                seen.append(json.loads(message["data"]))

    task = asyncio.create_task(collect())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsub.aclose()


async def _wait_published(
    seen: list[dict[str, Any]], match: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    async def found() -> bool:
        return any(match(envelope) for envelope in seen)

    await eventually(found, timeout=PIPELINE_TIMEOUT, what=what)
    return next(envelope for envelope in seen if match(envelope))


def _final_status(envelope: dict[str, Any]) -> bool:
    """The pipeline's last word: the submission's final status (published last)."""
    return bool(
        envelope["type"] == EventType.SUBMISSION_STATUS
        and envelope["data"]["submission"]["status"] == "complete"
    )


@pytest.mark.timeout(240)
async def test_page_catches_up_on_everything_missed_while_the_router_restarts(
    student: BrowserContext,
    stack: Stack,
    stack_redis: Redis,
    first_step_queue: QueueSwitch,
) -> None:
    """With the router down from mid-pipeline until the pipeline is complete and a grade
    released, the open page reconnects by itself once the router is back and shows the
    final state and the grade, with one row per step and no event applied twice."""
    # The second step runs on the other queue: holding it stops the pipeline right after
    # the first step, so the router goes down mid-pipeline, never too early or too late.
    second_step_queue = QueueSwitch(
        first_step_queue.sessions, first_step_queue.queue, SUBMISSION_STEPS[1].queue
    )
    assert second_step_queue.name != first_step_queue.name
    grade = "B+ (resynced)"
    page = await student.new_page()
    await login(page, "alice")
    try:
        await first_step_queue.pause()
        await second_step_queue.pause()
        submission_id = await _upload(page, "router-restart")
        topic = submission_topic(submission_id)
        await _open_live(page, submission_id)
        body = page.locator("body")

        async with _published(stack_redis, topic) as published:
            # Live before the drop: the first step's events arrive and are applied.
            await first_step_queue.resume()
            first = page.locator(f"[data-step='{STEP_NAMES[0]}']")
            await expect(first).to_have_attribute("data-status", "done", timeout=LIVE_TIMEOUT)
            assert any(c["kind"] == "event" for c in (await _page_log(page))["changes"])

            await asyncio.to_thread(stack.stop_router)
            await expect(body).to_have_attribute(
                "data-live-state", "reconnecting", timeout=LIVE_TIMEOUT
            )

            async def bridge_gone() -> bool:
                return not await asyncio.to_thread(stack.backend_joined)

            await eventually(bridge_gone, timeout=30, what="the bridge to lose the router")

            # The rest of the pipeline and the grade's release happen while the router
            # is down: their events go to Redis and on to nobody.
            await second_step_queue.resume()
            async with HeraldClient(stack.web_url) as marker:
                await marker.login("mark", "demo")
                await _set_grade(marker, submission_id, grade)
                state = await marker.get_json(f"/api/submissions/{submission_id}")
                response = await marker.http.post(
                    f"/api/assignments/{state['assignment']['id']}/release",
                    json={"at": None},
                    headers={"X-CSRF-Token": marker.csrf},
                )
                assert response.status == 202, await response.text()
                await _wait_published(published, _final_status, "the pipeline to complete")
                await _wait_published(
                    published,
                    lambda e: e["type"] == EventType.GRADE_RELEASED,
                    "the grade's release",
                )
                final = await marker.get_json(f"/api/submissions/{submission_id}")
        assert final["status"] == "complete" and final["grade"] == grade, final
        assert final["seq"] == max(e["seq"] for e in published)

        # The page really missed all of that: it still shows the state from before.
        missed_from = await page.evaluate("window.Herald.submissionPage.lastSeq")
        assert final["seq"] > missed_from
        assert await page.locator("#grade").text_content() == "Not released yet."
        assert await page.locator("#submission-status").text_content() != "complete"
        assert await body.get_attribute("data-live-state") == "reconnecting"

        await asyncio.to_thread(stack.ensure_router)

        # No reload, no click: the page reconnects, re-subscribes and resyncs.
        live = page.locator("#live-state")
        await expect(live).to_have_attribute("data-state", "live", timeout=RECOVERY_TIMEOUT)
        await expect(body).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
        await expect(page.locator("#grade")).to_have_text(grade, timeout=LIVE_TIMEOUT)
        await expect(page.locator("#submission-status")).to_have_text("complete")
        bar = page.get_by_role("progressbar")
        await expect(bar).to_have_attribute("aria-valuenow", "100")
        await expect(page.locator("#overall-progress-label")).to_have_text("100%")
        rows = page.locator("#steps tr[data-step]")
        assert await rows.evaluate_all("rows => rows.map(r => r.dataset.step)") == STEP_NAMES
        for step in final["steps"]:
            assert step["status"] in FINISHED, final
            row = page.locator(f"#steps tr[data-step='{step['name']}']")
            await expect(row).to_have_attribute("data-status", step["status"])
        await page.wait_for_function(
            f"() => window.Herald.submissionPage.lastSeq === {final['seq']}",
            timeout=LIVE_TIMEOUT,
        )

        log = await _page_log(page)
        assert log["states"][0] == "live"
        assert "reconnecting" in log["states"], log["states"]
        assert log["states"][-1] == "live", log["states"]
        _assert_nothing_applied_twice(log["changes"])
        # The catch-up came from the API, not from events: none was replayed.
        assert {"kind": "sync", "seq": final["seq"]} in log["changes"], log["changes"]
        assert max(c["seq"] for c in log["changes"] if c["kind"] == "event") == missed_from
        assert await page.evaluate("window.__heraldNoReload === true")
    finally:
        await second_step_queue.resume()
        await first_step_queue.resume()
        # The stack is shared by every end-to-end test: leave the router up and joined.
        await asyncio.to_thread(stack.ensure_router)


async def test_seq_gap_makes_the_page_resync_from_the_api(
    student: BrowserContext,
    stack: Stack,
    stack_redis: Redis,
    first_step_queue: QueueSwitch,
) -> None:
    """An event the page never got (its seq counted, its news only in the database) is
    noticed at the next event's seq gap: the page resyncs and shows the missed grade."""
    grade = "A- (after a gap)"
    page = await student.new_page()
    await login(page, "alice")
    await first_step_queue.pause()
    try:
        submission_id = await _upload(page, "seq-gap")
        topic = submission_topic(submission_id)
        async with _published(stack_redis, topic) as published:
            await first_step_queue.resume()
            done = await _wait_published(published, _final_status, "the pipeline to complete")
    finally:
        await first_step_queue.resume()
    await _open_live(page, submission_id)
    await expect(page.locator("#submission-status")).to_have_text("complete")
    state = await (await page.request.get(f"/api/submissions/{submission_id}")).json()
    assert state["seq"] == done["seq"]
    await page.wait_for_function(
        f"() => window.Herald.submissionPage.lastSeq === {state['seq']}", timeout=LIVE_TIMEOUT
    )

    # A release whose event was lost: the grade is released in the database and the
    # topic's seq counted, but nothing reaches the page.
    async with HeraldClient(stack.web_url) as marker:
        await marker.login("mark", "demo")
        await _set_grade(marker, submission_id, grade)
    async with first_step_queue.sessions.begin() as db:
        await db.execute(
            update(Submission)
            .where(Submission.id == submission_id)
            .values(grade_released_at=utcnow())
        )
    lost = int(await stack_redis.incr(seq_key(topic)))
    assert lost == state["seq"] + 1
    assert await page.locator("#grade").text_content() == "Not released yet."

    # The next event carries nothing new (the last step's state again), only its seq
    # shows that one was missed; applied as is, the grade would never appear.
    last_step = state["steps"][-1]
    assert last_step["name"] != "thumbnail"  # whose "done" makes the page resync anyway
    gap = await EventPublisher(stack_redis).publish(topic, EventType.STEP_DONE, {"step": last_step})
    assert gap == lost + 1

    await expect(page.locator("#grade")).to_have_text(grade, timeout=LIVE_TIMEOUT)
    await page.wait_for_function(
        f"() => window.Herald.submissionPage.lastSeq === {gap}", timeout=LIVE_TIMEOUT
    )
    changes = (await _page_log(page))["changes"]
    _assert_nothing_applied_twice(changes)
    assert changes == [{"kind": "sync", "seq": gap}], changes  # resynced, not applied
    await expect(page.locator("#submission-status")).to_have_text("complete")
    assert await page.evaluate("window.__heraldNoReload === true")
