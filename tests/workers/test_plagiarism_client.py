"""The external plagiarism adapter against a real local HTTP server playing the service:
slow checks, faults on demand, and idempotent submission across retries."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.outside_world import FakeService
from tests.support import free_port
from workers.plagiarism_client import (
    CheckRejected,
    CheckTimedOut,
    ExternalMatch,
    PlagiarismClient,
    ServiceUnavailable,
    reference_for,
)

ESSAY = (
    "The medieval harbour shaped the northern market of the guild, while the early "
    "council restricted the seasonal tariff. Critics point out that the wealthy "
    "merchant funded the canal of the province because the railway delayed the harvest."
)


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeService, str]]:
    """The fake service listening on a free local port; yields it and its URL."""
    fake = FakeService()
    app = web.Application()
    app.router.add_post("/api/checks", fake.create)
    app.router.add_get("/api/checks/{id}", fake.status)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}/api/"
    fake.hold.set()
    await runner.cleanup()


Fixture = tuple[FakeService, str]
FAST = {"timeout": 5.0, "poll_interval": 0.05}


async def test_check_submits_once_and_waits_for_the_score(service: Fixture) -> None:
    """A slow check is submitted, polled until done, and reported with the matching
    earlier reference; progress rises while it waits."""
    fake, url = service
    seen: list[float] = []

    async def progress(percent: float, detail: str) -> None:
        seen.append(percent)

    async with PlagiarismClient(url) as client:
        fake.delay = 0.0
        await client.check(reference_for(1), "a.txt", ESSAY, **FAST)
        fake.delay = 0.4
        report = await client.check(
            reference_for(2), "b.txt", ESSAY + " A new ending.", progress=progress, **FAST
        )
    assert report.external_id == "chk-2"
    assert report.matches == (ExternalMatch(reference_for(1), report.score),)
    assert 80.0 < report.score < 100.0
    assert fake.posts == 2 and fake.created == 2
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == 100.0
    assert report.as_result()["matches"] == [{"reference": "submission-1", "percent": report.score}]


async def test_same_reference_gets_the_same_check(service: Fixture) -> None:
    """Submitting the same reference twice (a crash before the id was saved) answers
    the first check's id and creates no second check; another reference gets its own."""
    fake, url = service
    async with PlagiarismClient(url) as client:
        first = await client.submit("submission-7", "a.txt", ESSAY)
        again = await client.submit("submission-7", "a.txt", ESSAY)
        other = await client.submit("submission-8", "a.txt", ESSAY)
    assert first == again != other
    assert fake.posts == 3 and fake.created == 2


async def test_retry_after_timeout_polls_the_known_check(service: Fixture) -> None:
    """A check still pending at the deadline raises a retryable timeout after the id was
    handed to the caller; the retry with that id only polls, and never posts again."""
    fake, url = service
    fake.never_finish = True
    saved: list[str] = []

    async def save(external_id: str) -> None:
        saved.append(external_id)

    async with PlagiarismClient(url) as client:
        started = time.monotonic()
        with pytest.raises(CheckTimedOut) as caught:
            await client.check(
                "submission-9", "a.txt", ESSAY, on_submitted=save, timeout=0.3, poll_interval=0.05
            )
        assert 0.3 <= time.monotonic() - started < 2.0
        assert isinstance(caught.value, ServiceUnavailable)
        assert caught.value.external_id == saved[0] == "chk-1"

        fake.never_finish = False
        report = await client.check("submission-9", "a.txt", ESSAY, known_id=saved[0], **FAST)
    assert report.external_id == "chk-1" and report.score == 0.0
    assert fake.posts == 1 and saved == ["chk-1"]


async def test_server_error_on_submit_is_retryable_and_does_not_double_submit(
    service: Fixture,
) -> None:
    """A 500 on submit raises a retryable error; the retry creates the one check."""
    fake, url = service
    fake.post_faults = [500, 503]
    fake.delay = 0.0
    async with PlagiarismClient(url) as client:
        for _ in range(2):
            with pytest.raises(ServiceUnavailable, match="answered 50"):
                await client.check("submission-3", "a.txt", ESSAY, **FAST)
        report = await client.check("submission-3", "a.txt", ESSAY, **FAST)
    assert report.external_id == "chk-1"
    assert fake.posts == 3 and fake.created == 1


async def test_passing_poll_failures_are_ridden_out(service: Fixture) -> None:
    """5xx answers, a rate limit and a non-JSON page while polling do not end the
    wait: the next poll gets the result."""
    fake, url = service
    fake.get_faults = [502, 429, 500]
    fake.garbage_polls = 1
    fake.delay = 0.0
    async with PlagiarismClient(url) as client:
        report = await client.check("submission-4", "a.txt", ESSAY, **FAST)
    assert report.external_id == "chk-1"
    assert fake.get_faults == [] and fake.garbage_polls == 0


async def test_poll_failures_until_the_deadline_time_out_with_the_last_error(
    service: Fixture,
) -> None:
    """A service that only fails while polling ends in the retryable timeout, which
    says what the last poll met."""
    fake, url = service
    async with PlagiarismClient(url) as client:
        external_id = await client.submit("submission-5", "a.txt", ESSAY)
        fake.get_faults = [503] * 1000
        with pytest.raises(CheckTimedOut, match="answered 503"):
            await client.wait_for_result(external_id, timeout=0.2, poll_interval=0.05)


async def test_bad_request_is_permanent(service: Fixture) -> None:
    """A 4xx (here: an empty text) is a rejection no retry can fix, with the service's
    reason."""
    _fake, url = service
    async with PlagiarismClient(url) as client:
        with pytest.raises(CheckRejected, match=r"\(400\): no text to check"):
            await client.check("submission-6", "a.txt", "", **FAST)


async def test_unknown_check_is_permanent(service: Fixture) -> None:
    """Polling an id the service does not know is a rejection, not an endless wait."""
    _fake, url = service
    async with PlagiarismClient(url) as client:
        with pytest.raises(CheckRejected, match="404"):
            await client.wait_for_result("chk-404", **FAST)


async def test_failed_check_is_permanent(service: Fixture) -> None:
    """A check the service reports as failed raises a rejection with its error."""
    fake, url = service
    fake.fail_checks = True
    fake.delay = 0.0
    async with PlagiarismClient(url) as client:
        with pytest.raises(CheckRejected, match="could not be read"):
            await client.check("submission-7", "a.txt", ESSAY, **FAST)
    assert not issubclass(CheckRejected, ServiceUnavailable)


async def test_no_server_is_retryable() -> None:
    """Nothing listening at the URL is a retryable failure."""
    async with PlagiarismClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ServiceUnavailable, match="did not answer"):
            await client.submit("submission-1", "a.txt", ESSAY)


async def test_a_request_that_hangs_is_cut_off(service: Fixture) -> None:
    """A service that accepts the connection but never answers runs into the
    per-request timeout, a retryable failure."""
    fake, url = service
    fake.hang_posts = True
    async with PlagiarismClient(url, request_timeout=0.2) as client:
        with pytest.raises(ServiceUnavailable, match="did not answer"):
            await client.submit("submission-1", "a.txt", ESSAY)


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "done", "score": 140, "matches": []},
        {"status": "done", "score": "high", "matches": []},
        {"status": "done", "score": 10, "matches": [{"percent": 10}]},
        {"status": "weird"},
    ],
)
async def test_answers_outside_the_protocol_are_retryable(answer: dict[str, Any]) -> None:
    """A report that breaks the protocol is not taken as a result; the wait ends in
    the retryable timeout naming the fault."""
    app = web.Application()

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(answer)

    app.router.add_get("/checks/{id}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with PlagiarismClient(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(CheckTimedOut, match="plagiarism service sent"):
                await client.wait_for_result("chk-1", timeout=0.1, poll_interval=0.05)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("url", ["ftp://example.org", "example.org/checks", "http://"])
def test_only_http_urls_are_taken(url: str) -> None:
    """A URL that is not http(s) with a host is refused when the client is made."""
    with pytest.raises(ValueError, match="http"):
        PlagiarismClient(url)
