"""Failure alerts with a real worker, Redis and each database: a task failing for good
gives every site admin one flash (live, with a button to the task) and the alert
addresses one email, however often the failure is reported; a crash's lost alert is
raised by the sweep, and an email the mail server refused for now is sent later."""

from __future__ import annotations

import email
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.db import Transactions, create_engine, session_factory
from herald.demo import load_demo_data
from herald.events import EventPublisher
from herald.models import Alert, AlertKind, Message, Task, TaskStatus, User, utcnow
from herald.names import user_topic
from herald.settings import Settings
from tests.conftest import make_settings
from tests.support import eventually, free_port
from tests.workers.support import worker_running
from workers import alerts
from workers.control import TaskRequest, submit_tasks
from workers.queue import RedisQueue

ALERT_EMAILS = "ops@example.edu, oncall@example.edu"


@dataclass
class World:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    publisher: EventPublisher
    transactions: Transactions
    queue: RedisQueue
    admins: list[int]
    others: list[int]

    @property
    def outbox(self) -> list[Path]:
        folder = self.settings.var_dir / "outbox"
        return sorted(folder.glob("*.eml")) if folder.exists() else []


@pytest.fixture
async def world(
    tmp_path: Path, redis_server: str, database_url: str, redis: Redis
) -> AsyncIterator[World]:
    """The demo site with two admins (ada, and mark made one), alert emails to the outbox."""
    settings = make_settings(tmp_path, redis_server, database_url, HERALD_ALERT_EMAILS=ALERT_EMAILS)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    await load_demo_data(sessions, "demo")
    async with sessions.begin() as db:
        await db.execute(update(User).where(User.username == "mark").values(is_admin=True))
    async with sessions() as db:
        users = (await db.execute(select(User.id, User.is_admin))).all()
    transactions = Transactions(engine)
    yield World(
        settings,
        sessions,
        EventPublisher(redis),
        transactions,
        RedisQueue(redis),
        sorted(u.id for u in users if u.is_admin),
        sorted(u.id for u in users if not u.is_admin),
    )
    transactions.close()
    await engine.dispose()


async def _flashes_for(world: World, task_id: int) -> dict[int, int]:
    """How many flashes pointing at the task each user has."""
    async with world.sessions() as db:
        rows = (await db.execute(select(Message.user_id, Message.options))).all()
    counts: dict[int, int] = {}
    for user_id, options in rows:
        if (options or {}).get("button", {}).get("url") == f"/tasks/{task_id}":
            counts[user_id] = counts.get(user_id, 0) + 1
    return counts


async def _next_flash(pubsub: PubSub) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None and message["type"] == "message":
            event = json.loads(message["data"])
            if event["type"] == "flash":
                return dict(event["data"])
    raise TimeoutError("no flash within 20 s")


async def test_a_poison_task_alerts_each_admin_once_and_emails_once(
    world: World, redis: Redis
) -> None:
    """diag.sleep failing every attempt: after its third it fails for good; each admin
    gets one warning flash live with a button to the task, others none, and one email
    goes to the alert addresses. Reporting the failure again (a retried settle) and the
    sweep change nothing."""
    live = redis.pubsub()
    await live.subscribe(user_topic(world.admins[0]))
    [submitted] = await submit_tasks(
        world.transactions, world.queue, [TaskRequest("diag.sleep", {"seconds": 0, "fail": True})]
    )
    task_id = submitted.id
    async with worker_running(world.settings):
        flash = await _next_flash(live)

        async def emailed() -> bool:
            async with world.sessions() as db:
                row = await db.scalar(select(Alert).where(Alert.task_id == task_id))
            return row is not None and row.emailed_at is not None

        await eventually(emailed, timeout=20, what="the alert to be emailed")
    await live.aclose()
    assert flash["level"] == "warning"
    assert f"Task {task_id} (diag.sleep, queue diag) failed for good" in flash["text"]
    assert "asked to fail" in flash["text"]
    assert flash["options"]["button"] == {"label": "Open the task", "url": f"/tasks/{task_id}"}
    assert await _flashes_for(world, task_id) == dict.fromkeys(world.admins, 1)

    [eml] = world.outbox
    message = email.message_from_bytes(eml.read_bytes())
    assert message["To"] == "ops@example.edu, oncall@example.edu"
    assert message["Subject"] == f"[Herald] Task {task_id} failed"
    assert message["Auto-Submitted"] == "auto-generated"
    assert f"/tasks/{task_id}" in message.get_payload()

    async with world.sessions() as db:
        task = await db.get(Task, task_id)
    assert task is not None and task.status == TaskStatus.FAILED
    again = alerts.alert_for_failure(
        alerts.FailedTask(task.id, task.run_id, task.kind, task.queue, task.detail)
    )
    assert await alerts.raise_alert(world.settings, world.sessions, world.publisher, again) is None
    assert await alerts.sweep(world.settings, world.sessions, world.publisher) == 0
    assert await _flashes_for(world, task_id) == dict.fromkeys(world.admins, 1)
    assert len(world.outbox) == 1


async def _failed_row(world: World, run_id: str) -> int:
    """A task row that failed for good a moment ago, as a worker that then died left it."""
    now = utcnow()
    async with world.sessions.begin() as db:
        task = Task(
            kind="diag.noop",
            queue="diag",
            params={},
            status=TaskStatus.FAILED,
            detail="gave up",
            run_id=run_id,
            attempts=3,
            started_at=now,
            finished_at=now,
        )
        db.add(task)
        await db.flush()
        return int(task.id)


async def test_the_sweep_raises_a_failure_whose_alert_a_crash_lost(world: World) -> None:
    """A failure committed by a worker that died before alerting is alerted by the next
    sweep, once; a later run of the same task that fails too is a new alert."""
    task_id = await _failed_row(world, "feedface:0")
    assert await alerts.sweep(world.settings, world.sessions, world.publisher) == 1
    assert await alerts.sweep(world.settings, world.sessions, world.publisher) == 0
    assert await _flashes_for(world, task_id) == dict.fromkeys(world.admins, 1)
    async with world.sessions.begin() as db:
        await db.execute(update(Task).where(Task.id == task_id).values(run_id="c0ffee00:0"))
    assert await alerts.sweep(world.settings, world.sessions, world.publisher) == 1
    assert await _flashes_for(world, task_id) == dict.fromkeys(world.admins, 2)
    assert len(world.outbox) == 2


async def test_an_email_the_server_could_not_take_is_sent_by_a_later_sweep(
    world: World, tmp_path: Path
) -> None:
    """The mail server is unreachable: the flashes go out, the email waits; a sweep a
    minute later sends it (here to the outbox), once."""
    down = Settings.from_env(
        {
            "HERALD_VAR_DIR": str(world.settings.var_dir),
            "HERALD_DATABASE_URL": world.settings.database_url,
            "HERALD_REDIS_URL": world.settings.redis_url,
            "HERALD_ALERT_EMAILS": ALERT_EMAILS,
            "HERALD_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
        }
    )
    task_id = await _failed_row(world, "0ddba11:0")
    assert await alerts.sweep(down, world.sessions, world.publisher) == 1
    async with world.sessions() as db:
        alert = await db.scalar(select(Alert).where(Alert.task_id == task_id))
    assert alert is not None and alert.emailed_at is None
    assert await _flashes_for(world, task_id) == dict.fromkeys(world.admins, 1)
    # Too soon: the sender may still be at it.
    await alerts.sweep(world.settings, world.sessions, world.publisher)
    assert world.outbox == []
    later = utcnow() + timedelta(minutes=2)
    await alerts.sweep(world.settings, world.sessions, world.publisher, later)
    await alerts.sweep(world.settings, world.sessions, world.publisher, later)
    assert [path.name for path in world.outbox] == [f"alert-{alert.id}.eml"]
    async with world.sessions() as db:
        sent = await db.get(Alert, alert.id)
    assert sent is not None and sent.emailed_at is not None


async def test_without_alert_emails_only_flashes_go_out(
    tmp_path: Path, redis_server: str, database_url: str, world: World
) -> None:
    """HERALD_ALERT_EMAILS unset: the alert is stored and flashed, nothing is mailed."""
    quiet = make_settings(tmp_path, redis_server, database_url)
    task_id = await _failed_row(world, "5ca1ab1e:0")
    assert await alerts.sweep(quiet, world.sessions, world.publisher) == 1
    async with world.sessions() as db:
        alert = await db.scalar(select(Alert).where(Alert.task_id == task_id))
    assert alert is not None and alert.kind == AlertKind.TASK_FAILED
    assert alert.emailed_at is not None  # nothing left to send
    assert world.outbox == []
