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


_PENDING = (TaskStatus.QUEUED, TaskStatus.RUNNING)


# ARGV: job key prefix, id1, id2, ...; returns the ids whose job hash is gone.
_MISSING = """
local lost = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then table.insert(lost, ARGV[i]) end
end
return lost
"""


async def _missing(redis: Redis, ids: Sequence[int]) -> list[int]:
    """The ids Redis holds no job for, in one script call."""
    lost = await redis.eval(_MISSING, 0, names.job_key(""), *ids)
    return [int(task_id) for task_id in lost]


async def reconcile(sessions: async_sessionmaker[AsyncSession], queue: RedisQueue) -> list[int]:
    """Enqueue every pending task Redis has lost; returns their ids.

    Ids first, rows only for the lost ones, re-read after the Redis check: a task
    that finished in between (its job gone because it is done) is not re-queued.
    """
    await mirror_all(sessions, queue)
    async with sessions() as db:
        pending = list(await db.scalars(select(Task.id).where(Task.status.in_(_PENDING))))
    restored: list[int] = []
    for start in range(0, len(pending), _BATCH):
        lost = await _missing(queue.redis, pending[start : start + _BATCH])
        if not lost:
            continue
        async with sessions() as db:
            rows = (
                await db.execute(
                    select(
                        Task.id,
                        Task.kind,
                        Task.queue,
                        Task.priority,
                        Task.max_attempts,
                        Task.immediate,
                    ).where(Task.id.in_(lost), Task.status.in_(_PENDING))
                )
            ).all()
        jobs = [job_for(row) for row in rows]
        if jobs:
            await queue.enqueue(*jobs)
            restored.extend(r.id for r in rows)
    if restored:
        log.warning("reconciler.restored", task_ids=restored[:100], count=len(restored))
    return restored


async def reconcile_once_per_cluster(
    sessions: async_sessionmaker[AsyncSession], queue: RedisQueue, period: float
) -> list[int] | None:
    """Run :func:`reconcile` unless another worker did within ``period`` seconds."""
    if not await queue.redis.set(RECONCILE_LOCK, "1", nx=True, px=int(period * 1000)):
        return None
    return await reconcile(sessions, queue)
