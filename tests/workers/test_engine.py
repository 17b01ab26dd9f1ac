"""The engine with a real worker, a real Redis and each database: order, idempotency,
retries and dead letters, cancel, pause, windows, delays, orphans and shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.db import Transactions, create_engine, session_factory
from herald.events import EventPublisher
from herald.models import Task, TaskEvent, TaskStatus
from herald.settings import Settings
from tests.support import eventually
from workers import worker
from workers.context import TaskContext
from workers.control import TaskRequest, cancel_task, retry_task, submit_tasks
from workers.kinds import KINDS, TaskKind
from workers.queue import RedisQueue
from workers.queue_settings import update_queue
from workers.reconciler import reconcile
from workers.window import DAYS


@dataclass
class Backends:
    sessions: async_sessionmaker[AsyncSession]
    transactions: Transactions
    queue: RedisQueue
    publisher: EventPublisher

    async def submit(self, kind: str, params: dict | None = None, **options: object) -> int:
        [done] = await submit_tasks(
            self.transactions, self.queue, [TaskRequest(kind, params or {}, **options)]
        )
        return done.id

    async def task(self, task_id: int) -> Task:
        async with self.sessions() as db:
            task = await db.get(Task, task_id)
        assert task is not None
        return task

    async def wait_status(
        self,
        task_id: int,
        *statuses: TaskStatus,
        timeout: float = 20,  # noqa: ASYNC109 - a polling deadline, as in tests.support
    ) -> Task:
        async def reached() -> bool:
            return (await self.task(task_id)).status in statuses

        await eventually(reached, timeout=timeout, what=f"task {task_id} to be {statuses}")
        return await self.task(task_id)


@pytest.fixture
async def backends(settings: Settings, redis: Redis) -> AsyncIterator[Backends]:
    engine = create_engine(settings)
    transactions = Transactions(engine)
    yield Backends(session_factory(engine), transactions, RedisQueue(redis), EventPublisher(redis))
    transactions.close()
    await engine.dispose()


@asynccontextmanager
async def running_worker(settings: Settings, concurrency: int = 4) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        worker.serve(settings, stop, queues=("diag",), concurrency=concurrency)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _messages(pubsub: PubSub, quiet: float) -> list[dict]:
    """Every event received until none arrives for ``quiet`` seconds."""
    events = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        # None also stands for a subscribe confirmation, so keep reading to the deadline.
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            events.append(json.loads(message["data"]))
            deadline = time.monotonic() + quiet
    return events


async def _events(backends: Backends, task_id: int, status: TaskStatus) -> list[float]:
    async with backends.sessions() as db:
        rows = await db.scalars(
            select(TaskEvent.at)
            .where(TaskEvent.task_id == task_id, TaskEvent.status == status)
            .order_by(TaskEvent.id)
        )
        return [at.timestamp() for at in rows]


async def test_priority_first_then_fifo_when_run(settings: Settings, backends: Backends) -> None:
    """One slot: tasks start in priority order, and in submission order within a priority."""
    plan = [0, 5, 0, -3, 5, 0]
    ids = [await backends.submit("diag.noop", priority=p) for p in plan]
    async with running_worker(settings, concurrency=1):
        for task_id in ids:
            await backends.wait_status(task_id, TaskStatus.DONE)
    starts = {task_id: (await backends.task(task_id)).started_at for task_id in ids}
    expected = [ids[i] for i in (1, 4, 0, 2, 5, 3)]
    assert sorted(ids, key=lambda task_id: starts[task_id]) == expected


async def test_idempotency_key_returns_the_first_task_even_when_racing(
    backends: Backends,
) -> None:
    """Five concurrent submits with one key make one task; all five get its id."""
    request = TaskRequest("diag.noop", key="report:2026-11-23")
    results = await asyncio.gather(
        *(submit_tasks(backends.transactions, backends.queue, [request]) for _ in range(5))
    )
    ids = {result[0].id for result in results}
    assert len(ids) == 1
    assert sum(result[0].created for result in results) == 1
    async with backends.sessions() as db:
        assert len((await db.scalars(select(Task))).all()) == 1
    assert await backends.queue.depth("diag") == 1


async def test_failures_back_off_then_fail_into_the_dead_letter_set_with_an_alert(
    settings: Settings, backends: Backends, redis: Redis
) -> None:
    """A task that keeps failing is retried after 0.5 s then 1 s, ends failed with its
    traceback, sits in the dead-letter set, alerts admin.tasks, and can be retried."""
    alerts = redis.pubsub()
    await alerts.subscribe(names.ADMIN_TASKS)
    task_id = await backends.submit("diag.sleep", {"seconds": 0, "fail": True})
    async with running_worker(settings):
        task = await backends.wait_status(task_id, TaskStatus.FAILED)
        assert task.attempts == 3 and "Traceback" in (task.error or "")
        assert "asked to fail" in (task.detail or "")
        starts = await _events(backends, task_id, TaskStatus.RUNNING)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(gaps) == 2 and gaps[0] >= 0.5 and gaps[1] >= 1.0
        assert await redis.zscore(names.DEAD_LETTER_KEY, str(task_id)) is not None
        [failed] = [e for e in await _messages(alerts, 0.5) if e["type"] == "task.failed"]
        assert failed["data"]["id"] == task_id and "asked to fail" in failed["data"]["error"]

        await retry_task(backends.sessions, backends.queue, backends.publisher, task_id)
        assert await redis.zscore(names.DEAD_LETTER_KEY, str(task_id)) is None
        await eventually(
            lambda: _count_runs(backends, task_id, 4), timeout=10, what="the retried run"
        )
    await alerts.aclose()


async def _count_runs(backends: Backends, task_id: int, at_least: int) -> bool:
    return len(await _events(backends, task_id, TaskStatus.RUNNING)) >= at_least


async def test_cancel_a_waiting_task_and_a_running_one(
    settings: Settings, backends: Backends
) -> None:
    """A waiting task is removed and never runs; a running one stops at its next
    heartbeat and ends cancelled, on whatever worker runs it."""
    await update_queue(backends.sessions, backends.queue, "diag", paused=True)
    waiting = await backends.submit("diag.noop")
    status = await cancel_task(backends.sessions, backends.queue, backends.publisher, waiting)
    assert status == TaskStatus.CANCELLED
    await update_queue(backends.sessions, backends.queue, "diag", paused=False)
    long = await backends.submit("diag.sleep", {"seconds": 60})
    async with running_worker(settings):
        await backends.wait_status(long, TaskStatus.RUNNING)
        status = await cancel_task(backends.sessions, backends.queue, backends.publisher, long)
        assert status == TaskStatus.RUNNING
        task = await backends.wait_status(long, TaskStatus.CANCELLED, timeout=5)
    assert task.finished_at is not None and task.started_at is not None
    assert (task.finished_at - task.started_at).total_seconds() < 10
    assert (await backends.task(waiting)).started_at is None
    assert await backends.queue.depth("diag") == 0


async def test_a_closed_window_holds_work_until_it_opens(
    settings: Settings, backends: Backends
) -> None:
    """Outside its window a queue starts nothing (the job waits); once the window
    includes now, the backlog drains, without restarting the worker."""
    tomorrow = DAYS[(datetime.now(UTC).weekday() + 1) % 7]
    today = DAYS[datetime.now(UTC).weekday()]
    await update_queue(backends.sessions, backends.queue, "diag", window=f"{tomorrow} 00:00-24:00")
    task_id = await backends.submit("diag.noop")
    async with running_worker(settings):
        await asyncio.sleep(2.5)  # two window refreshes and many claim passes: the wait under test
        assert (await backends.task(task_id)).status == TaskStatus.QUEUED
        await update_queue(backends.sessions, backends.queue, "diag", window=f"{today} 00:00-24:00")
        await backends.wait_status(task_id, TaskStatus.DONE, timeout=10)


async def test_max_active_one_holds_across_two_worker_processes(
    settings: Settings, backends: Backends
) -> None:
    """With max_active=1, two workers (4 slots each) never run two of the queue's tasks
    at once: every start follows the previous finish."""
    from herald.supervisor import Supervisor
    from tests.conftest import stack_env

    await update_queue(backends.sessions, backends.queue, "diag", max_active=1)
    ids = [await backends.submit("diag.sleep", {"seconds": 0.3}) for _ in range(6)]
    env = stack_env(settings.var_dir, settings.redis_url, settings.database_url)
    supervisor = Supervisor(Settings.from_env(env), {**os.environ, **env})
    try:
        for _ in range(2):
            supervisor.start_service("worker", "--queues", "diag", "--concurrency", "4")
        for task_id in ids:
            await backends.wait_status(task_id, TaskStatus.DONE, timeout=30)
    finally:
        supervisor.stop_all()
    tasks = sorted([await backends.task(i) for i in ids], key=lambda t: t.started_at or 0)
    for earlier, later in itertools.pairwise(tasks):
        assert earlier.finished_at and later.started_at
        assert later.started_at >= earlier.finished_at, (
            "two tasks of a max_active=1 queue overlapped"
        )


async def test_delayed_task_waits_in_redis_until_its_time(
    settings: Settings, backends: Backends, redis: Redis
) -> None:
    """A task submitted to run 1.5 s from now is held in Redis's delayed set, not started
    early, and runs once due."""
    due = time.time() + 1.5
    task_id = await backends.submit("diag.noop", at=due)
    assert await redis.zscore(names.queue_delayed_key("diag"), str(task_id)) is not None
    async with running_worker(settings):
        task = await backends.wait_status(task_id, TaskStatus.DONE, timeout=10)
    assert task.started_at is not None and task.started_at.timestamp() >= due - 0.01


async def test_a_job_that_keeps_killing_its_workers_gives_up(
    settings: Settings, backends: Backends
) -> None:
    """Orphan recoveries count as attempts: after three dead workers the task fails
    instead of looping forever."""
    task_id = await backends.submit("diag.noop")
    for _ in range(3):  # three workers claim it and die (their leases run out)
        assert await backends.queue.claim("diag", "doomed", 1, lease_seconds=0.01)
        await asyncio.sleep(0.02)
        await backends.queue.reap("diag")
    async with running_worker(settings):
        task = await backends.wait_status(task_id, TaskStatus.FAILED)
    assert "gave up after 3 attempts" in (task.detail or "")


async def test_shutdown_hands_unfinished_work_back_without_spending_an_attempt(
    settings: Settings, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM-style stop: the running job gets its grace period, is handed back, and the
    next worker runs it to completion on the same attempt."""
    monkeypatch.setattr(worker, "SHUTDOWN_GRACE_SECONDS", 0.2)
    task_id = await backends.submit("diag.sleep", {"seconds": 1.5})
    async with running_worker(settings):
        await backends.wait_status(task_id, TaskStatus.RUNNING)
    assert await backends.queue.depth("diag") == 1
    async with running_worker(settings):
        task = await backends.wait_status(task_id, TaskStatus.DONE)
    assert task.attempts == 1


async def test_chatty_progress_is_coalesced_and_the_final_state_kept(
    settings: Settings, backends: Backends, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler reporting progress 2,000 times sends a handful of events; the task
    still ends done at 100%."""

    async def chatty(ctx: TaskContext) -> None:
        for step in range(2000):
            await ctx.progress(step / 20)
            await asyncio.sleep(0)

    monkeypatch.setitem(KINDS, "test.chatty", TaskKind("test.chatty", "diag", chatty))
    events = redis.pubsub()
    await events.subscribe(names.ADMIN_TASKS)
    task_id = await backends.submit("test.chatty")
    async with running_worker(settings):
        task = await backends.wait_status(task_id, TaskStatus.DONE)
    received = await _messages(events, 0.5)
    await events.aclose()
    mine = [state for e in received for state in e["data"]["tasks"] if state["id"] == task_id]
    assert task.progress == 100 and mine[-1]["status"] == "done"
    assert len(mine) < 30


async def test_reconciler_restores_queue_settings_after_redis_loses_them(
    backends: Backends, redis: Redis
) -> None:
    """The DB keeps queue settings: after FLUSHALL the reconciler mirrors them back."""
    await update_queue(backends.sessions, backends.queue, "bulk", paused=True, max_active=3)
    await redis.flushall()
    await reconcile(backends.sessions, backends.queue)
    mirrored = await redis.hgetall(names.queue_settings_key("bulk"))
    assert mirrored[b"paused"] == b"1" and mirrored[b"max_active"] == b"3"


async def test_bad_requests_are_refused_with_reasons(backends: Backends) -> None:
    """Unknown kinds, bad priorities, caps and windows are refused with a message."""
    from workers.control import TaskControlError
    from workers.kinds import UnknownKind

    with pytest.raises(UnknownKind, match=r"diag\.noop"):
        await backends.submit("no.such.kind")
    with pytest.raises(TaskControlError, match="priority"):
        await backends.submit("diag.noop", priority=500)
    with pytest.raises(ValueError, match="max_active"):
        await update_queue(backends.sessions, backends.queue, "diag", max_active=0)
    with pytest.raises(ValueError, match="not a day"):
        await update_queue(backends.sessions, backends.queue, "diag", window="Xyz 1:00-2:00")
    with pytest.raises(LookupError):
        await cancel_task(backends.sessions, backends.queue, backends.publisher, 999)
    done = await backends.submit("diag.noop")
    await backends.queue.cancel(str(done), "diag")
    async with backends.sessions.begin() as db:
        (await db.get(Task, done)).status = TaskStatus.DONE  # type: ignore[union-attr]
    with pytest.raises(TaskControlError, match="already ended"):
        await cancel_task(backends.sessions, backends.queue, backends.publisher, done)
    with pytest.raises(TaskControlError, match="only failed or cancelled"):
        await retry_task(backends.sessions, backends.queue, backends.publisher, done)
