"""How long a released grade takes from the marker's click to the student's screen.

    python bench/release_latency.py [--rounds 20]

Starts the whole stack as the end-to-end tests do (its own redis-server, Crossbar,
router auth, bridge, a worker and the web app, on a temporary SQLite database) and
two Chromium pages: Alice on her submission's page, Mark on the assignment page.
Each round Alice uploads a new essay, Mark grades it through the API, then clicks
"Release grades now". Both pages stamp ``Date.now()`` (one machine, one clock): the
marker's page when the button is pressed, the student's page when the grade and
the flash appear in its DOM.

The baseline, in the same run: a flash published straight from this process, as a
worker does (``herald.flash.send_flash``), timed from just before its store and
publish to the student's screen. The release path adds the HTTP request, the queue
and the worker's transaction to that.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from playwright.async_api import Page, async_playwright  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import select  # noqa: E402

from herald.db import create_engine, session_factory  # noqa: E402
from herald.events import EventPublisher  # noqa: E402
from herald.flash import Flash, send_flash  # noqa: E402
from herald.models import User  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.client import HeraldClient  # noqa: E402
from tests.e2e.test_browser import login  # noqa: E402
from tests.stack import start_stack  # noqa: E402

TIMEOUT_MS = 30_000

# Stamps, in the student's page, when the grade and this round's flash first show.
WATCH_STUDENT = """([submission]) => {
  const stamps = window.__stamps = {};
  const link = `/submissions/${submission}`;
  const check = () => {
    const grade = document.getElementById("grade");
    if (!stamps.grade && grade && grade.textContent !== "Not released yet.") {
      stamps.grade = Date.now();
    }
    if (!stamps.flash && document.querySelector(`#flash a[href="${link}"]`)) {
      stamps.flash = Date.now();
    }
  };
  new MutationObserver(check).observe(document.body, {childList: true, subtree: true,
    characterData: true});
}"""
# Stamps, in the student's page, when a flash with this text shows.
WATCH_FLASH_TEXT = """([text]) => {
  window.__baseline = null;
  new MutationObserver((_, observer) => {
    const found = Array.from(document.querySelectorAll("#flash .flash-text"))
      .some((node) => node.textContent === text);
    if (found) { window.__baseline = Date.now(); observer.disconnect(); }
  }).observe(document.body, {childList: true, subtree: true});
}"""
# Stamps, in the marker's page, the moment the release button is pressed.
WATCH_CLICK = """() => {
  window.__clicked = null;
  const button = document.querySelector("form[data-release-form] button[value=now]");
  button.addEventListener("click", () => { window.__clicked = Date.now(); }, {capture: true});
}"""


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name:<34} p50 {statistics.median(ordered):6.0f} ms   p95 {p95:6.0f} ms   "
        f"max {ordered[-1]:6.0f} ms"
    )


async def wait_complete(client: HeraldClient, submission: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = await client.get_json(f"/api/submissions/{submission}")
        if state["status"] == "complete":
            return
        await asyncio.sleep(0.05)  # polling the API, not posing as work
    raise TimeoutError(f"submission {submission} did not complete")


async def live(page: Page, selector: str = "body") -> None:
    await page.wait_for_selector(f"{selector}[data-live='1']", timeout=TIMEOUT_MS)


async def run(rounds: int, root: Path) -> None:
    stack_iter = start_stack(root)
    stack = next(stack_iter)
    engine = create_engine(stack.settings)
    redis = Redis.from_url(stack.settings.redis_url)
    try:
        sessions = session_factory(engine)
        publisher = EventPublisher(redis)
        async with sessions() as db:
            alice_id = await db.scalar(select(User.id).where(User.username == "alice"))
        assert alice_id is not None
        async with (
            async_playwright() as playwright,
            HeraldClient(stack.web_url) as alice_api,
            HeraldClient(stack.web_url) as mark_api,
        ):
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            student = await (await browser.new_context(base_url=stack.web_url)).new_page()
            marker = await (await browser.new_context(base_url=stack.web_url)).new_page()
            await login(student, "alice")
            await login(marker, "mark")
            await alice_api.login("alice", "demo")
            await mark_api.login("mark", "demo")
            assignment = (await alice_api.get_json("/api/assignments"))[0]["id"]
            release, baseline = [], []
            for number in range(rounds):
                status, body = await alice_api.upload(
                    assignment, f"essay-{number}.txt", f"Essay {number}.\n".encode()
                )
                assert status == 202, body
                submission = body["id"]
                await wait_complete(alice_api, submission)
                graded = await mark_api.http.put(
                    f"/api/submissions/{submission}/grade",
                    json={"grade": "B"},
                    headers={"X-CSRF-Token": mark_api.csrf},
                )
                assert graded.status == 200
                await student.goto(f"/submissions/{submission}")
                await live(student)
                await marker.goto(f"/assignments/{assignment}")
                await live(marker, "#marking")

                # The baseline: straight from the backend to the screen.
                text = f"Baseline flash {number}"
                await student.evaluate(WATCH_FLASH_TEXT, [text])
                sent = time.time() * 1000
                await send_flash(sessions, publisher, [alice_id], Flash(text, autohide=1))
                await student.wait_for_function("() => window.__baseline", timeout=TIMEOUT_MS)
                baseline.append(await student.evaluate("window.__baseline") - sent)

                # The release: the marker's click to the student's screen.
                await student.evaluate(WATCH_STUDENT, [submission])
                await marker.evaluate(WATCH_CLICK)
                await marker.click("form[data-release-form] button[value=now]")
                await student.wait_for_function(
                    "() => window.__stamps.grade && window.__stamps.flash", timeout=TIMEOUT_MS
                )
                clicked = await marker.evaluate("window.__clicked")
                stamps = await student.evaluate("window.__stamps")
                release.append(max(stamps["grade"], stamps["flash"]) - clicked)
                print(
                    f"round {number + 1:>3}/{rounds}: click → grade {stamps['grade'] - clicked} ms,"
                    f" flash {stamps['flash'] - clicked} ms; backend flash {baseline[-1]:.0f} ms",
                    flush=True,
                )
            await browser.close()
        print()
        print(summary("click → grade and flash on screen", release))
        print(summary("baseline: publish → flash on screen", baseline))
        print(
            f"the release path costs {statistics.median(release) / statistics.median(baseline):.1f}"
            "× the bare delivery (median over median)"
        )
    finally:
        await redis.aclose()
        await engine.dispose()
        stack_iter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as folder:
        asyncio.run(run(args.rounds, Path(folder)))


if __name__ == "__main__":
    main()
