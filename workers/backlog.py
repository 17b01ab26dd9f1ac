"""Backlog alerts: a queue whose oldest ready job has waited longer than
``HERALD_BACKLOG_ALERT_SECONDS`` alerts the admins, once per episode.

The age of a queue's backlog is that of its oldest job ready to run: the oldest
tasks the DB says are queued, the first of them Redis holds as ready (delayed
ones, waiting for a retry or a run-at, are not a backlog). Jobs held back on
purpose are not a backlog either: while a queue is paused, or outside its window
(and not in immediate mode), its age is 0, and afterwards it counts from the
moment it was let go.

An episode starts when the age passes the threshold (one alert) and ends when it
falls below half of it (so a backlog hovering at the threshold alerts once, not
every pass); the next time it passes the threshold is a new episode.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.events import EventPublisher
from herald.logs import get_logger
from herald.models import Alert, AlertKind, Task, TaskStatus, utcnow
from herald.settings import Settings
from workers.alerts import BACKLOG_LEVEL, Raised, raise_alert
from workers.queue import RedisQueue
from workers.queue_overview import known_queues, window_open
from workers.queue_settings import QueueConfig

__all__ = ["candidates_query", "check_backlogs", "oldest_ready"]

log = get_logger(__name__)

# How many of a queue's oldest queued tasks are looked up in Redis for the first ready one.
CANDIDATES = 200


def candidates_query(name: str) -> Select[int, datetime | None]:
    """A queue's oldest queued tasks: one range of ``ix_tasks_status_queue_queued``."""
    return (
        select(Task.id, Task.queued_at)
        .where(Task.status == TaskStatus.QUEUED, Task.queue == name, Task.queued_at.is_not(None))
        .order_by(Task.queued_at)
        .limit(CANDIDATES)
    )


async def oldest_ready(
    sessions: async_sessionmaker[AsyncSession], queue: RedisQueue, name: str
) -> tuple[int, datetime] | None:
    """The id and queue time of the queue's oldest task whose job is ready to run."""
    async with sessions() as db:
        rows = (await db.execute(candidates_query(name))).all()
    if not rows:
        return None
    async with queue.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.zscore(names.queue_ready_key(name), str(row.id))
            pipe.zscore(names.queue_urgent_key(name), str(row.id))
        scores = await pipe.execute()
    for index, row in enumerate(rows):
        if scores[2 * index] is not None or scores[2 * index + 1] is not None:
            return row.id, row.queued_at
    return None


def _held(config: QueueConfig, zone: str, now: datetime) -> bool:
    return config.paused or (not config.immediate and not window_open(config.window, zone, now))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} seconds"
    minutes = int(seconds // 60)
    if minutes < 90:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} h {minutes % 60:02d} min"


async def check_backlogs(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    queue: RedisQueue,
    publisher: EventPublisher,
    now: datetime | None = None,
) -> dict[str, float]:
    """Measure every queue's backlog age (kept in Redis for the metrics), raise an
    alert for each new episode and end those that cleared; returns the ages."""
    now = now or utcnow()
    stamp = now.timestamp()
    redis = queue.redis
    queue_names, configs = await known_queues(sessions, queue)
    held = {
        name
        for name in queue_names
        if _held(configs.get(name, QueueConfig(name)), settings.timezone, now)
    }
    if held:
        await redis.hset(names.QUEUE_HELD_KEY, mapping=dict.fromkeys(held, stamp))
    held_at = {
        (k.decode() if isinstance(k, bytes) else k): float(v)
        for k, v in (await redis.hgetall(names.QUEUE_HELD_KEY)).items()
    }
    ages: dict[str, float] = {}
    for name in queue_names:
        found = None if name in held else await oldest_ready(sessions, queue, name)
        if found is None:
            ages[name] = 0.0
            continue
        since = max(found[1].timestamp(), held_at.get(name, 0.0))
        ages[name] = max(0.0, stamp - since)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(names.BACKLOG_AGE_KEY)
        if ages:
            pipe.hset(names.BACKLOG_AGE_KEY, mapping={k: v for k, v in ages.items()})
        await pipe.execute()
    threshold = settings.backlog_alert_seconds
    if threshold > 0:
        await _alert(settings, sessions, publisher, ages, threshold, now)
    return ages


async def _alert(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    ages: dict[str, float],
    threshold: int,
    now: datetime,
) -> None:
    async with sessions() as db:
        rows = await db.execute(
            select(Alert.id, Alert.queue).where(
                Alert.kind == AlertKind.BACKLOG, Alert.ended_at.is_(None)
            )
        )
        open_episodes = {row.queue: row.id for row in rows}
    ended = [
        alert_id
        for name, alert_id in open_episodes.items()
        if ages.get(name or "", 0.0) < threshold / 2
    ]
    if ended:
        async with sessions.begin() as db:
            await db.execute(update(Alert).where(Alert.id.in_(ended)).values(ended_at=now))
        log.info("alert.backlog_cleared", alerts=ended)
    for name, age in sorted(ages.items()):
        if age < threshold or name in open_episodes:
            continue
        await raise_alert(
            settings,
            sessions,
            publisher,
            Raised(
                key=f"backlog:{name}:{int(now.timestamp())}",
                kind=AlertKind.BACKLOG,
                text=f"Queue {name} has a backlog: its oldest job ready to run has waited "
                f"{_duration(age)} (the alert threshold is {_duration(threshold)}).",
                button=("Open the queues", "/admin/queues"),
                level=BACKLOG_LEVEL,
                queue=name,
            ),
        )
