"""The monitor with real Redis and each database: queue depth sampled once per cluster
however many workers try, samples pruned after their retention, and backlog alerts
raised once per episode (not while a queue is held back on purpose)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.db import Transactions, create_engine, session_factory
from herald.demo import load_demo_data
from herald.events import EventPublisher
from herald.models import Alert, AlertKind, Message, QueueSample, Task, User, utcnow
from herald.settings import Settings
from tests.conftest import make_settings
from tests.support import eventually
from tests.workers.support import worker_running
from workers.backlog import check_backlogs
from workers.context import Services
from workers.control import TaskRequest, cancel_task, submit_tasks
from workers.monitor import monitor_once_per_cluster
from workers.queue import RedisQueue
from workers.queue_settings import update_queue
from workers.sampler import SAMPLE_RETENTION, take_sample

THRESHOLD = 60


@dataclass
class Site:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    transactions: Transactions
    queue: RedisQueue
    publisher: EventPublisher

    def services(self, redis: Redis) -> Services:
        return Services(self.settings, self.sessions, RedisQueue(redis), self.publisher, redis)

    async def submit(self, count: int) -> list[int]:
        requests = [TaskRequest("diag.noop") for _ in range(count)]
        return [s.id for s in await submit_tasks(self.transactions, self.queue, requests)]

    async def samples(self) -> list[tuple[str, int]]:
        async with self.sessions() as db:
            rows = await db.execute(
                select(QueueSample.queue, QueueSample.waiting).order_by(QueueSample.id)
            )
            return [(row.queue, row.waiting) for row in rows]

    async def backlog_alerts(self) -> list[Alert]:
        async with self.sessions() as db:
            found = await db.scalars(
                select(Alert).where(Alert.kind == AlertKind.BACKLOG).order_by(Alert.id)
            )
            return list(found)


@pytest.fixture
async def site(
    tmp_path: Path, redis_server: str, database_url: str, redis: Redis
) -> AsyncIterator[Site]:
    settings = make_settings(
        tmp_path,
        redis_server,
        database_url,
        HERALD_BACKLOG_ALERT_SECONDS=str(THRESHOLD),
        HERALD_ALERT_EMAILS="ops@example.edu",
    )
    engine = create_engine(settings)
    sessions = session_factory(engine)
    await load_demo_data(sessions, "demo")
    transactions = Transactions(engine)
    yield Site(settings, sessions, transactions, RedisQueue(redis), EventPublisher(redis))
    transactions.close()
    await engine.dispose()


async def test_two_monitors_sample_once_per_period(
    site: Site, redis_server: str, redis: Redis
) -> None:
    """Two monitors (each with its own Redis connection, as on two machines) try at
    once: one samples every known queue, the other does nothing; once the period is
    over, one of them samples again."""
    await site.submit(3)
    await update_queue(site.sessions, site.queue, "io", paused=True)
    others = [Redis.from_url(redis_server) for _ in range(2)]
    try:
        tried = await asyncio.gather(
            *(monitor_once_per_cluster(site.services(r), period=0.5) for r in others)
        )
        assert sorted(tried) == [False, True]
        first = await site.samples()
        assert len(first) == len(dict(first))  # one sample per queue
        assert dict(first)["diag"] == 3 and dict(first)["io"] == 0

        async def period_over() -> bool:
            return not await redis.exists(names.MONITOR_LOCK)

        await eventually(period_over, timeout=10, what="the monitor lock to expire")
        tried = await asyncio.gather(
            *(monitor_once_per_cluster(site.services(r), period=0.5) for r in others)
        )
        assert sorted(tried) == [False, True]
        assert len(await site.samples()) == 2 * len(first)
    finally:
        for client in others:
            await client.aclose()


async def test_a_running_worker_samples(site: Site) -> None:
    """A worker's monitor loop takes the first sample as it starts."""
    await site.submit(1)

    async def sampled() -> bool:
        return bool(await site.samples())

    async with worker_running(site.settings):
        await eventually(sampled, timeout=20, what="the worker's first sample")
    assert "diag" in dict(await site.samples())


async def test_samples_older_than_the_retention_are_pruned(site: Site) -> None:
    """Each sampling drops the samples past their retention, and only those."""
    await site.submit(1)
    now = utcnow()
    async with site.sessions.begin() as db:
        for age in (SAMPLE_RETENTION + timedelta(minutes=1), SAMPLE_RETENTION - timedelta(hours=1)):
            db.add(QueueSample(at=now - age, queue="diag", waiting=9, delayed=0, running=0))
    await take_sample(site.sessions, site.queue, now)
    async with site.sessions() as db:
        ages = [
            now - at for at in await db.scalars(select(QueueSample.at).order_by(QueueSample.at))
        ]
    # The young old sample, and this sampling's one per queue.
    assert sorted(set(ages)) == [timedelta(0), SAMPLE_RETENTION - timedelta(hours=1)]


async def _queued_at(site: Site, ids: list[int]) -> datetime:
    async with site.sessions() as db:
        value = await db.scalar(select(func.min(Task.queued_at)).where(Task.id.in_(ids)))
    assert value is not None
    return value


async def _backlog_flashes(site: Site) -> dict[str, int]:
    async with site.sessions() as db:
        rows = (
            await db.execute(
                select(User.username, func.count())
                .join(Message, Message.user_id == User.id)
                .where(Message.text.like("Queue diag has a backlog%"))
                .group_by(User.username)
            )
        ).all()
    return {name: count for name, count in rows}


async def _check(site: Site, at: datetime) -> dict[str, float]:
    return await check_backlogs(site.settings, site.sessions, site.queue, site.publisher, at)


async def test_a_backlog_alerts_once_per_episode(site: Site, redis: Redis) -> None:
    """Jobs ready but not taken: under the threshold nothing; past it one urgent alert
    (a flash to each admin, an email); still past it later, nothing more; once the
    backlog clears the episode ends, and the next backlog is a new alert."""
    ids = await site.submit(3)
    start = await _queued_at(site, ids)
    ages = await _check(site, start + timedelta(seconds=THRESHOLD / 2))
    assert ages["diag"] == pytest.approx(THRESHOLD / 2, abs=1)
    assert await site.backlog_alerts() == []

    await _check(site, start + timedelta(seconds=THRESHOLD + 1))
    [alert] = await site.backlog_alerts()
    assert alert.queue == "diag" and alert.ended_at is None
    assert "oldest job ready to run has waited 61 seconds" in alert.text
    assert await _backlog_flashes(site) == {"ada": 1}
    assert len(list((site.settings.var_dir / "outbox").glob("alert-*.eml"))) == 1
    assert float(await redis.hget(names.BACKLOG_AGE_KEY, "diag") or 0) == pytest.approx(61, abs=1)

    await _check(site, start + timedelta(seconds=5 * THRESHOLD))
    assert len(await site.backlog_alerts()) == 1

    for task_id in ids:
        await cancel_task(site.sessions, site.queue, site.publisher, task_id)
    await _check(site, start + timedelta(seconds=6 * THRESHOLD))
    [ended] = await site.backlog_alerts()
    assert ended.ended_at is not None

    again = await site.submit(1)
    restart = await _queued_at(site, again)
    await _check(site, restart + timedelta(seconds=THRESHOLD + 5))
    first, second = await site.backlog_alerts()
    assert second.ended_at is None and second.id != first.id
    assert await _backlog_flashes(site) == {"ada": 2}
    assert len(list((site.settings.var_dir / "outbox").glob("alert-*.eml"))) == 2


async def test_a_backlog_just_under_the_threshold_does_not_end_the_episode(site: Site) -> None:
    """An episode ends when the age falls under half the threshold, so a backlog that
    hovers around the threshold alerts once, not on every pass."""
    ids = await site.submit(2)
    start = await _queued_at(site, ids)
    await _check(site, start + timedelta(seconds=THRESHOLD + 1))
    # The oldest job ran; the next one is 0.6 thresholds old: still the same episode.
    await cancel_task(site.sessions, site.queue, site.publisher, ids[0])
    async with site.sessions.begin() as db:
        later = start + timedelta(seconds=0.8 * THRESHOLD)
        await db.execute(update(Task).where(Task.id == ids[1]).values(queued_at=later))
    await _check(site, start + timedelta(seconds=1.4 * THRESHOLD))
    [alert] = await site.backlog_alerts()
    assert alert.ended_at is None
    await _check(site, start + timedelta(seconds=2.1 * THRESHOLD))
    assert len(await site.backlog_alerts()) == 1


async def test_a_held_queue_is_no_backlog_until_let_go(site: Site) -> None:
    """Jobs waiting in a paused queue (or outside its window) are held on purpose: no
    alert; after the resume their age counts from when the monitor last saw it held."""
    ids = await site.submit(2)
    start = await _queued_at(site, ids)
    await update_queue(site.sessions, site.queue, "diag", paused=True)
    ages = await _check(site, start + timedelta(seconds=3 * THRESHOLD))
    assert ages["diag"] == 0 and await site.backlog_alerts() == []
    await update_queue(site.sessions, site.queue, "diag", paused=False)
    ages = await _check(site, start + timedelta(seconds=3.5 * THRESHOLD))
    assert ages["diag"] == pytest.approx(THRESHOLD / 2, abs=1)
    assert await site.backlog_alerts() == []
    await _check(site, start + timedelta(seconds=4 * THRESHOLD + 1))
    assert len(await site.backlog_alerts()) == 1


async def test_delayed_jobs_are_not_a_backlog(site: Site) -> None:
    """A task waiting for its run-at time is in the delayed set, not ready: no age."""
    [task] = await submit_tasks(
        site.transactions, site.queue, [TaskRequest("diag.noop", at=utcnow().timestamp() + 3600)]
    )
    start = await _queued_at(site, [task.id])
    ages = await _check(site, start + timedelta(seconds=10 * THRESHOLD))
    assert ages["diag"] == 0 and await site.backlog_alerts() == []
