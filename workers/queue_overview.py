"""Each queue as operators see it: what Redis holds (waiting, delayed, running), its
settings from the DB, whether its window is open now, and its recent failures.

The same building blocks as ``herald queues`` (``RedisQueue.stats``,
``load_queue_settings``, ``failures_since``), gathered once for the Queues
screen, its API and the metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.models import utcnow
from workers.control import failures_since
from workers.kinds import KINDS, _load_builtin_kinds
from workers.queue import RedisQueue
from workers.queue_settings import QueueConfig, load_queue_settings
from workers.window import TimeWindow, WindowError

__all__ = ["FAILURES_WINDOW", "QueueView", "known_queues", "queue_views", "window_open"]

FAILURES_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class QueueView:
    name: str
    waiting: int  # ready to run now (immediate jobs included)
    delayed: int  # waiting for a time: a retry's backoff, a run-at
    running: int
    max_active: int | None
    paused: bool
    window: str | None
    immediate: bool
    window_open: bool  # whether its window lets it start work now
    failed_1h: int  # tasks failed for good in the last hour

    @property
    def state(self) -> str:
        """``paused``, ``closed`` (outside its window), or ``running``."""
        if self.paused:
            return "paused"
        if not self.window_open and not self.immediate:
            return "closed"
        return "running"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


def window_open(window: str | None, zone: str, now: datetime | None = None) -> bool:
    """Whether a queue with this window may start work at ``now`` (default: now)."""
    if not window:
        return True
    try:
        spec = TimeWindow.parse(window)
    except WindowError:
        return False  # as the workers do: a window they cannot read keeps the queue shut
    return spec.is_open((now or utcnow()).astimezone(ZoneInfo(zone)))


async def known_queues(
    sessions: async_sessionmaker[AsyncSession], queue: RedisQueue
) -> tuple[list[str], dict[str, QueueConfig]]:
    """Every queue a task kind runs on, anything was ever queued on, or that has
    settings, sorted; and the settings of those that have them."""
    configs = await load_queue_settings(sessions)
    _load_builtin_kinds()
    of_kinds = {kind.queue for kind in KINDS.values()}
    return sorted(set(configs) | of_kinds | await queue.known_queues()), configs


async def queue_views(
    sessions: async_sessionmaker[AsyncSession],
    queue: RedisQueue,
    zone: str,
    *,
    only: str | None = None,
) -> list[QueueView]:
    """Every known queue (or just ``only``), by name."""
    names, configs = await known_queues(sessions, queue)
    if only is not None:
        names = [name for name in names if name == only]
    now = utcnow()
    failures = await failures_since(sessions, now - FAILURES_WINDOW)
    views = []
    for stats in await queue.stats(names):
        config = configs.get(stats.name, QueueConfig(stats.name))
        views.append(
            QueueView(
                name=stats.name,
                waiting=stats.waiting,
                delayed=stats.delayed,
                running=stats.running,
                max_active=config.max_active,
                paused=config.paused,
                window=config.window,
                immediate=config.immediate,
                window_open=window_open(config.window, zone, now),
                failed_1h=failures.get(stats.name, 0),
            )
        )
    return views
