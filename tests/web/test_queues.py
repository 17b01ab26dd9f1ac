"""The Queues screen and its API: who may see and change queues, how a bad change is
refused, and that a change applies live to the claims every worker makes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import Transactions
from herald.models import QueueSetting, Task, TaskStatus
from tests.support import eventually
from tests.web.conftest import Client, Demo, login, settings_of
from tests.workers.support import worker_running
from workers.control import TaskRequest, submit_tasks
from workers.queue import RedisQueue


@pytest.fixture
async def queued(engine: AsyncEngine, redis: Redis) -> AsyncIterator[list[int]]:
    """Two diag.noop tasks waiting on queue diag, so the queue is known."""
    transactions = Transactions(engine)
    done = await submit_tasks(
        transactions, RedisQueue(redis), [TaskRequest("diag.noop"), TaskRequest("diag.noop")]
    )
    yield [item.id for item in done]
    transactions.close()


async def _next_event(pubsub: PubSub) -> dict[str, Any]:
    """The next event on a subscription (a subscribe confirmation reads as None)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None and message["type"] == "message":
            return dict(json.loads(message["data"]))
    raise TimeoutError("no event within 10 s")


async def _admin(client: Client) -> str:
    return await login(client, "ada")


async def test_queues_api_shows_depth_settings_and_failures(
    client: Client, demo: Demo, queued: list[int]
) -> None:
    """An admin sees each queue's waiting, running, settings, state and failures."""
    await _admin(client)
    response = await client.get("/api/queues")
    assert response.status == 200
    [diag] = [q for q in (await response.json())["queues"] if q["name"] == "diag"]
    assert diag == {
        "name": "diag",
        "waiting": 2,
        "delayed": 0,
        "running": 0,
        "max_active": None,
        "paused": False,
        "window": None,
        "immediate": False,
        "window_open": True,
        "failed_1h": 0,
        "state": "running",
    }


async def test_only_admins_see_or_change_queues(
    client: Client, demo: Demo, queued: list[int]
) -> None:
    """Signed out: 401; a student or marker: 403 from the API, 404 for the page."""
    assert (await client.get("/api/queues")).status == 401
    for username in ("alice", "mark"):
        csrf = await login(client, username)
        assert (await client.get("/api/queues")).status == 403
        response = await client.patch(
            "/api/queues/diag", json={"paused": True}, headers={"X-CSRF-Token": csrf}
        )
        assert response.status == 403
        assert (await client.get("/admin/queues")).status == 404
        assert (await client.get("/admin/dashboard")).status == 404
    async with demo.sessions() as db:
        assert await db.get(QueueSetting, "diag") is None


async def test_patch_needs_the_csrf_token(client: Client, demo: Demo, queued: list[int]) -> None:
    """A PATCH without the session's token is refused before anything changes."""
    await _admin(client)
    response = await client.patch("/api/queues/diag", json={"paused": True})
    assert response.status == 403
    assert (await response.json())["error"] == "csrf_failed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"paused": "yes"}, "paused must be true or false"),
        ({"immediate": 1}, "immediate must be true or false"),
        ({"max_active": 0}, "max_active must be from 1"),
        ({"max_active": True}, "max_active must be a number"),
        ({"max_active": "3"}, "max_active must be a number"),
        ({"window": "Mon-Fri 25:00-08:00"}, "is not a time of day"),
        ({"window": "whenever"}, "cannot read 'whenever'"),
        ({"window": 5}, "window must be text"),
        ({"colour": "red"}, "Unknown field(s): colour"),
        ({}, "Nothing to change"),
        ([], "JSON object"),
    ],
)
async def test_bad_changes_are_refused_with_the_reason(
    client: Client, demo: Demo, queued: list[int], body: object, message: str
) -> None:
    """Each bad value answers 400 with a message naming what is wrong; nothing is stored."""
    csrf = await _admin(client)
    response = await client.patch(
        "/api/queues/diag", data=json.dumps(body), headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] in ("bad_request", "bad_json")
    assert message in answer["message"]
    async with demo.sessions() as db:
        assert await db.get(QueueSetting, "diag") is None


async def test_an_unknown_queue_is_404(client: Client, demo: Demo, queued: list[int]) -> None:
    """Only queues that exist (had work, or settings) can be changed."""
    csrf = await _admin(client)
    response = await client.patch(
        "/api/queues/nosuch", json={"paused": True}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 404


async def test_pausing_stops_claims_at_once_and_resuming_lets_them_run(
    client: Client, demo: Demo, queued: list[int], redis: Redis
) -> None:
    """A PATCH pause is in Redis before it answers: the next claim of any worker gets
    nothing; the change is announced on admin.tasks; resuming lets a worker run them."""
    csrf = await _admin(client)
    events = redis.pubsub()
    await events.subscribe(names.ADMIN_TASKS)
    response = await client.patch(
        "/api/queues/diag",
        json={"paused": True, "max_active": 3, "window": "always"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 200
    answer = await response.json()
    assert answer["paused"] is True and answer["max_active"] == 3 and answer["window"] is None
    assert answer["state"] == "paused"
    assert await RedisQueue(redis).claim("diag", "test-worker", 10, 2.5) == []
    assert (await _next_event(events))["type"] == "queue.changed"
    await events.aclose()

    response = await client.patch(
        "/api/queues/diag", json={"paused": False}, headers={"X-CSRF-Token": csrf}
    )
    assert (await response.json())["max_active"] == 3  # untouched settings are kept
    async with worker_running(settings_of(client)):

        async def all_done() -> bool:
            async with demo.sessions() as db:
                statuses = await db.scalars(select(Task.status).where(Task.id.in_(queued)))
                return set(statuses) == {TaskStatus.DONE}

        await eventually(all_done, timeout=20, what="the resumed queue's tasks to run")


async def test_the_page_lists_queues_and_its_forms_work_without_javascript(
    client: Client, demo: Demo, queued: list[int]
) -> None:
    """The screen renders every queue; the pause and settings forms post and return to
    it; a bad window re-renders it with the reason."""
    await _admin(client)
    html = await (await client.get("/admin/queues")).text()
    assert 'data-queue="diag"' in html
    assert 'action="/admin/queues/diag"' in html
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert csrf is not None
    token = csrf.group(1)
    response = await client.post(
        "/admin/queues/diag", data={"csrf_token": token, "paused": "1"}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/admin/queues#queue-diag"
    form = {
        "csrf_token": token,
        "settings": "1",
        "max_active": "2",
        "window": "Mon-Fri 18:00-08:00",
        "immediate": "1",
    }
    response = await client.post("/admin/queues/diag", data=form, allow_redirects=False)
    assert response.status == 303
    async with demo.sessions() as db:
        setting = await db.get(QueueSetting, "diag")
    assert setting is not None
    assert (setting.paused, setting.max_active, setting.window, setting.immediate) == (
        True,
        2,
        "Mon-Fri 18:00-08:00",
        True,
    )
    html = await (await client.get("/admin/queues")).text()
    assert "Resume" in html and 'value="Mon-Fri 18:00-08:00"' in html
    response = await client.post(
        "/admin/queues/diag", data={**form, "window": "Mon-Fri 9-5"}, allow_redirects=False
    )
    assert response.status == 400
    assert "cannot read" in await response.text()
    response = await client.post(
        "/admin/queues/diag", data={**form, "max_active": "lots"}, allow_redirects=False
    )
    assert response.status == 400
