"""GET /metrics: cluster-wide counters that move when a real worker runs real tasks,
cumulative histograms, gauges read live, label values escaped, and who may scrape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import Transactions
from herald.metrics import record_wamp_sessions
from herald.models import Task, TaskStatus
from herald.settings import Settings, SettingsError
from tests.exposition_parser import Family, parse
from tests.support import eventually
from tests.web.conftest import Client, ClientFactory, Demo, settings_of
from tests.workers.support import worker_running
from workers.context import TaskContext
from workers.control import TaskRequest, submit_tasks
from workers.kinds import KINDS, Outcome, TaskKind, register
from workers.queue import RedisQueue

TOKEN = "Zq8-metrics-token-4nT7wPv2"
# A kind whose name needs every escape the format has: quote, backslash, newline.
ODD_KIND = 'diag.odd "quoted" \\ and\nnewline'


async def _scrape(client: Client, **headers: str) -> dict[str, Family]:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(await response.text())


async def _odd(ctx: TaskContext) -> Outcome:
    return Outcome(detail="odd")


@pytest.fixture
def odd_kind() -> Iterator[str]:
    """A registered kind with the oddest name the metrics must carry."""
    register(TaskKind(ODD_KIND, "diag", _odd, quiet=True))
    yield ODD_KIND
    del KINDS[ODD_KIND]


async def test_counters_and_histograms_move_after_real_tasks(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis, odd_kind: str
) -> None:
    """Three no-ops, an oddly named kind and a task that fails three times: the gauges
    show them waiting, then the counters, histograms and event counts show what ran."""
    transactions = Transactions(engine)
    requests = [TaskRequest("diag.noop") for _ in range(3)]
    requests += [TaskRequest(odd_kind), TaskRequest("diag.sleep", {"seconds": 0, "fail": True})]
    ids = [item.id for item in await submit_tasks(transactions, RedisQueue(redis), requests)]
    transactions.close()
    before = await _scrape(client)
    assert before["herald_queue_depth"].value(queue="diag") == 5
    assert before["herald_queue_active"].value(queue="diag") == 0
    assert before["herald_queue_paused"].value(queue="diag") == 0
    assert before["herald_tasks_processed_total"].labelled() == []
    assert before["herald_dead_letter_tasks"].value() == 0

    async with worker_running(settings_of(client)):

        async def settled() -> bool:
            async with demo.sessions() as db:
                statuses = list(await db.scalars(select(Task.status).where(Task.id.in_(ids))))
            return statuses.count(TaskStatus.DONE) == 4 and TaskStatus.FAILED in statuses

        await eventually(settled, timeout=30, what="the tasks to finish")
    after = await _scrape(client)
    processed = after["herald_tasks_processed_total"]
    assert processed.value(queue="diag", kind="diag.noop") == 3
    assert processed.value(queue="diag", kind=odd_kind) == 1
    assert after["herald_tasks_failed_total"].value(queue="diag", kind="diag.sleep") == 1
    assert after["herald_task_retries_total"].value(queue="diag", kind="diag.sleep") == 2
    durations = after["herald_task_duration_seconds"]
    assert durations.type == "histogram"
    noop = durations.buckets(queue="diag", kind="diag.noop")
    assert noop[-1] == (float("inf"), 3)
    assert [count for _, count in noop] == sorted(count for _, count in noop)
    assert durations.buckets(queue="diag", kind="diag.sleep")[-1][1] == 3  # every run
    events = after["herald_events_published_total"]
    assert events.value(family="admin.tasks", type="task.failed") == 1
    assert events.value(family="admin.tasks", type="tasks.changed") >= 5
    assert after["herald_queue_depth"].value(queue="diag") == 0
    assert after["herald_dead_letter_tasks"].value() == 1


async def test_capped_and_paused_queues_show_their_settings(
    client: Client, demo: Demo, redis: Redis
) -> None:
    """max_active appears for a capped queue only; paused is 1 while paused; the
    backlog age is the monitor's last measurement."""
    from workers.queue_settings import update_queue

    await update_queue(demo.sessions, RedisQueue(redis), "io", paused=True, max_active=4)
    await update_queue(demo.sessions, RedisQueue(redis), "cpu", paused=False)
    await redis.hset(names.BACKLOG_AGE_KEY, mapping={"io": 12.5})
    scraped = await _scrape(client)
    assert scraped["herald_queue_paused"].value(queue="io") == 1
    assert scraped["herald_queue_max_active"].labelled() == [({"queue": "io"}, 4)]
    assert scraped["herald_queue_backlog_age_seconds"].value(queue="io") == 12.5


async def test_wamp_sessions_are_counted_per_router_node_and_stale_nodes_dropped(
    client: Client, demo: Demo, redis: Redis
) -> None:
    """Router auth's counts per router node appear; one not refreshed for a minute
    (its router auth is gone) is left out and removed."""
    await record_wamp_sessions(redis, "node-a:8081", 7)
    stale = json.dumps({"count": 3, "at": time.time() - 3600})
    await redis.hset(names.METRICS_WAMP_SESSIONS_KEY, "node-b:8081", stale)
    scraped = await _scrape(client)
    assert scraped["herald_wamp_sessions"].labelled() == [({"router": "node-a:8081"}, 7)]
    assert await redis.hkeys(names.METRICS_WAMP_SESSIONS_KEY) == [b"node-a:8081"]


async def test_without_a_token_only_this_machine_may_scrape(client: Client, demo: Demo) -> None:
    """Loopback is served; a request that came through a proxy is not, even from
    loopback; and a signed-in admin's cookie is no substitute."""
    assert (await client.get("/metrics")).status == 200
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        response = await client.get("/metrics", headers={header: "203.0.113.9"})
        assert response.status == 403
        assert "HERALD_METRICS_TOKEN" in await response.text()


async def test_behind_a_trusted_proxy_the_client_address_counts(make_client: ClientFactory) -> None:
    """With HERALD_TRUST_PROXY the forwarded client is not this machine: refused."""
    client = await make_client(HERALD_TRUST_PROXY="1")
    response = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert response.status == 403


async def test_with_a_token_every_scrape_must_bring_it(
    make_client: ClientFactory, demo: Demo
) -> None:
    """No token or a wrong one: 401 with a Bearer challenge; the right one: served."""
    client = await make_client(HERALD_METRICS_TOKEN=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    scraped = await _scrape(client, Authorization=f"Bearer {TOKEN}")
    assert "herald_queue_depth" in scraped


def test_a_guessable_token_is_refused_at_start() -> None:
    """HERALD_METRICS_TOKEN must be long and random; it never shows in a repr."""
    with pytest.raises(SettingsError, match="HERALD_METRICS_TOKEN"):
        Settings.from_env({"HERALD_METRICS_TOKEN": "metrics"})
    settings = Settings.from_env({"HERALD_METRICS_TOKEN": TOKEN})
    assert settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)
