"""Queue depth history: what Redis holds of each queue, sampled into ``queue_samples``.

Task rows say what finished and when, so throughput, failures and execution
times come from them; how long a queue was at a moment is nowhere else, so the
monitor (once per cluster, every ``MONITOR_SECONDS``) writes one row per queue
here, and prunes rows older than :data:`SAMPLE_RETENTION`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.models import QueueSample, utcnow
from workers.queue import QueueStats, RedisQueue
from workers.queue_overview import known_queues

__all__ = ["SAMPLE_RETENTION", "take_sample"]

SAMPLE_RETENTION = timedelta(days=14)


async def take_sample(
    sessions: async_sessionmaker[AsyncSession], queue: RedisQueue, now: datetime | None = None
) -> list[QueueStats]:
    """Record every known queue's waiting, delayed and running counts at ``now``, and
    drop samples past their retention; returns what was recorded."""
    now = now or utcnow()
    names, _configs = await known_queues(sessions, queue)
    stats = await queue.stats(names)
    async with sessions.begin() as db:
        db.add_all(
            QueueSample(
                at=now,
                queue=item.name,
                waiting=item.waiting,
                delayed=item.delayed,
                running=item.running,
            )
            for item in stats
        )
        await db.execute(delete(QueueSample).where(QueueSample.at < now - SAMPLE_RETENTION))
    return stats
