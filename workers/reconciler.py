"""The DB is the truth; Redis carries the work. If Redis loses data (a restart
without persistence, a FLUSHALL), the reconciler finds every task the DB says is
queued or running that Redis no longer holds, and enqueues it again; and it
mirrors every queue's settings into Redis again.

Re-enqueueing is safe in every race: enqueue skips a job that exists, and a
runner that finds its task already finished only completes the job.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.logs import get_logger
from herald.models import Task, TaskStatus
from workers.queue import RedisQueue, job_for
from workers.queue_settings import mirror_all

__all__ = ["RECONCILE_LOCK", "reconcile", "reconcile_once_per_cluster"]

log = get_logger(__name__)

RECONCILE_LOCK = f"{names.KEY_PREFIX}reconcile-lock"
_BATCH = 500


async def _missing(redis: Redis, tasks: Sequence[Task]) -> list[Task]:
    async with redis.pipeline(transaction=False) as pipe:
        for task in tasks:
            pipe.exists(names.job_key(str(task.id)))
        present = await pipe.execute()
    return [task for task, there in zip(tasks, present, strict=True) if not there]


async def reconcile(sessions: async_sessionmaker[AsyncSession], queue: RedisQueue) -> list[int]:
    """Enqueue every pending task Redis has lost; returns their ids."""
    await mirror_all(sessions, queue)
    async with sessions() as db:
        pending = (
            await db.scalars(
                select(Task).where(Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]))
            )
        ).all()
    restored: list[int] = []
    for start in range(0, len(pending), _BATCH):
        chunk = pending[start : start + _BATCH]
        lost = await _missing(queue.redis, chunk)
        if lost:
            await queue.enqueue(*(job_for(task) for task in lost))
            restored.extend(task.id for task in lost)
    if restored:
        log.warning("reconciler.restored", task_ids=restored, count=len(restored))
    return restored


async def reconcile_once_per_cluster(
    sessions: async_sessionmaker[AsyncSession], queue: RedisQueue, period: float
) -> list[int] | None:
    """Run :func:`reconcile` unless another worker did within ``period`` seconds."""
    if not await queue.redis.set(RECONCILE_LOCK, "1", nx=True, px=int(period * 1000)):
        return None
    return await reconcile(sessions, queue)
