"""The admin webhook client against a real local HTTP server playing the admin system."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from tests.outside_world import SECRET, AdminSystem, admin_app
from tests.support import free_port
from workers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    AdminWebhook,
    Delivery,
    WebhookRejected,
    WebhookUnavailable,
    encode_record,
    sign,
    verify_signature,
)

RECORD = {"submission": 420, "student": "alice", "assignment": 7, "sha256": "ab" * 32}


@pytest.fixture
async def admin() -> AsyncIterator[AdminSystem]:
    """A real aiohttp server on a free port playing the admin system."""
    port = free_port()
    system = AdminSystem(url=f"http://127.0.0.1:{port}/records")
    runner = web.AppRunner(admin_app(system), shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield system
    system.release.set()
    await runner.cleanup()


async def deliver(url: str, key: str = "submission-420", **options: Any) -> Delivery:
    async with AdminWebhook(url, options.pop("secret", SECRET), **options) as hook:
        return await hook.deliver(RECORD, idempotency_key=key)


async def test_delivery_is_signed_and_recorded(admin: AdminSystem) -> None:
    """A record arrives once, signed, with its key, JSON type and Herald's user agent."""
    delivery = await deliver(admin.url)
    assert delivery == Delivery(status=201, record_id="rec-1", duplicate=False)
    assert admin.records == {"rec-1": RECORD}
    headers = admin.requests[0].headers
    assert headers[IDEMPOTENCY_HEADER] == "submission-420"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("Herald-Webhook/")
    assert headers[SIGNATURE_HEADER].startswith("t=")


async def test_repeat_with_the_same_key_is_a_duplicate(admin: AdminSystem) -> None:
    """A second delivery with the same key gets the first record's id and adds nothing."""
    first = await deliver(admin.url)
    second = await deliver(admin.url)
    assert second == Delivery(status=200, record_id=first.record_id, duplicate=True)
    assert len(admin.records) == 1
    third = await deliver(admin.url, key="submission-421")
    assert third.record_id == "rec-2" and not third.duplicate


async def test_conflict_counts_as_delivered(admin: AdminSystem) -> None:
    """A 409 for a key the admin system already has is a delivered duplicate, not an error."""
    admin.repeat_status = 409
    await deliver(admin.url)
    assert await deliver(admin.url) == Delivery(status=409, record_id="rec-1", duplicate=True)


async def test_lost_answer_then_retry_stores_once(admin: AdminSystem) -> None:
    """When the record is stored but the answer is lost, the retry finds it by its key."""
    admin.fail = "store-then-hang"
    with pytest.raises(WebhookUnavailable):
        await deliver(admin.url, timeout=0.5)
    admin.fail = None
    retried = await deliver(admin.url)
    assert retried == Delivery(status=200, record_id="rec-1", duplicate=True)
    assert list(admin.records) == ["rec-1"]


async def test_wrong_secret_is_refused_for_good(admin: AdminSystem) -> None:
    """A request the admin system cannot verify (401) is a permanent rejection."""
    with pytest.raises(WebhookRejected, match="401") as raised:
        await deliver(admin.url, secret="not-the-shared-secret")
    assert (raised.value.retryable, raised.value.status) == (False, 401)
    assert admin.records == {}


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (408, True), (429, True), (400, False), (403, False),
     (404, False), (422, False)],
)  # fmt: skip
async def test_status_classification(admin: AdminSystem, status: int, retryable: bool) -> None:
    """5xx, 408 and 429 are worth retrying; other 4xx answers are permanent."""
    admin.fail = status
    error = WebhookUnavailable if retryable else WebhookRejected
    with pytest.raises(error) as raised:
        await deliver(admin.url)
    assert raised.value.retryable is retryable
    assert raised.value.status == status
    assert "told to fail" in str(raised.value)


async def test_retry_after_seconds_and_date_are_hints(admin: AdminSystem) -> None:
    """429's Retry-After, in seconds or as an HTTP date, reaches the caller as seconds."""
    admin.fail, admin.retry_after = 429, "7"
    with pytest.raises(WebhookUnavailable) as raised:
        await deliver(admin.url)
    assert raised.value.retry_after == 7
    admin.fail, admin.retry_after = 503, formatdate(time.time() + 120, usegmt=True)
    with pytest.raises(WebhookUnavailable) as raised:
        await deliver(admin.url)
    assert raised.value.retry_after is not None and 100 < raised.value.retry_after <= 120


async def test_redirect_is_refused(admin: AdminSystem) -> None:
    """A redirect is not followed (a POST must not be re-sent elsewhere): fix the URL."""
    with pytest.raises(WebhookRejected, match="redirected to /records"):
        await deliver(admin.url.replace("/records", "/old"))
    assert admin.records == {}


async def test_hanging_admin_system_times_out(admin: AdminSystem) -> None:
    """An admin system that never answers is a retryable timeout after ``timeout`` seconds."""
    admin.fail = "hang"
    began = time.monotonic()
    with pytest.raises(WebhookUnavailable, match=r"did not answer within 0\.5s"):
        await deliver(admin.url, timeout=0.5)
    assert time.monotonic() - began < 5


async def test_connection_refused_is_retryable() -> None:
    """Nothing listening is a retryable error."""
    with pytest.raises(WebhookUnavailable, match="cannot reach the admin system") as raised:
        await deliver(f"http://127.0.0.1:{free_port()}/records")
    assert raised.value.retryable is True


async def test_logs_show_neither_secret_nor_record(admin: AdminSystem) -> None:
    """Log lines name the host and the key, never the secret, the URL's path or the record."""
    with capture_logs() as logs:
        await deliver(admin.url)
    assert [entry["event"] for entry in logs] == ["webhook.delivered"]
    assert logs[0]["idempotency_key"] == "submission-420"
    assert logs[0]["webhook"] == admin.url.removesuffix("/records")
    assert SECRET not in repr(logs) and "alice" not in repr(logs)


async def test_deliver_needs_an_open_session() -> None:
    """Delivering before ``async with`` is a programming error, said plainly."""
    hook = AdminWebhook("http://127.0.0.1:1/records", SECRET)
    with pytest.raises(RuntimeError, match="async with"):
        await hook.deliver(RECORD, idempotency_key="k")


# verify_signature: what receivers rely on.

BODY = encode_record(RECORD)
NOW = 1_790_000_000


def test_signature_round_trip() -> None:
    """A signature made by ``sign`` verifies for the same secret, body and time."""
    assert verify_signature(SECRET, sign(SECRET, BODY, timestamp=NOW), BODY, now=NOW)
    assert verify_signature(SECRET, sign(SECRET, BODY, timestamp=NOW), BODY.decode(), now=NOW)


def test_tampered_body_or_wrong_secret_fails() -> None:
    """Any change to the body, or another secret, fails verification."""
    header = sign(SECRET, BODY, timestamp=NOW)
    tampered = BODY.replace(b'"alice"', b'"mallory"')
    assert tampered != BODY
    assert not verify_signature(SECRET, header, tampered, now=NOW)
    assert not verify_signature("another-secret-1234", header, BODY, now=NOW)


def test_timestamp_is_signed_and_checked() -> None:
    """An old or future timestamp is refused; so is a timestamp changed after signing."""
    header = sign(SECRET, BODY, timestamp=NOW)
    assert verify_signature(SECRET, header, BODY, now=NOW + 300)
    assert not verify_signature(SECRET, header, BODY, now=NOW + 301)
    assert not verify_signature(SECRET, header, BODY, now=NOW - 301)
    assert verify_signature(SECRET, header, BODY, tolerance_s=3600, now=NOW + 3000)
    moved = header.replace(f"t={NOW}", f"t={NOW + 1000}")
    assert not verify_signature(SECRET, moved, BODY, now=NOW + 1000)


def test_any_matching_v1_is_enough() -> None:
    """During a key rotation the header may carry two v1 values; one match verifies."""
    old = sign("old-secret-0123456789", BODY, timestamp=NOW)
    new = sign(SECRET, BODY, timestamp=NOW).split(",")[1]
    assert verify_signature(SECRET, f"{old},{new}", BODY, now=NOW)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "t=abc,v1=00", f"t={NOW}", "v1=00", f"t={NOW},v1", f"t={NOW},v0=00"],
)
def test_malformed_headers_fail(header: str | None) -> None:
    """A missing or malformed header is False, never an exception."""
    assert verify_signature(SECRET, header, BODY, now=NOW) is False
