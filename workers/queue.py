"""Reliable Redis queue: priority + FIFO ready sets, leases with fencing tokens.

Layout per queue (names in :mod:`herald.names`):

- ``ready``  sorted set of job ids, score = (100 - priority) * 2**40 + arrival,
  so higher priority runs first and equal priorities run in arrival order;
- ``leases`` sorted set of job ids being run, score = lease deadline (ms);
- ``delayed`` sorted set of job ids waiting for a time (a retry's backoff, a
  run-at), score = due time (ms); :meth:`RedisQueue.promote` moves due ones to
  ``ready``. Delayed work lives in Redis, never in a worker's memory;
- ``job:{id}`` hash: kind, queue, score, attempts, max_attempts, token.

A claim moves ids from ``ready`` to ``leases`` and gives each job a new random fencing
``token`` in one Lua script. A job leaves Redis only in :meth:`RedisQueue.complete`,
which checks that token: a worker whose lease expired (and whose job another
worker took over) cannot complete it. Expired leases go back to ``ready`` via
:meth:`RedisQueue.reap`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from herald import names
from herald.models import Task

__all__ = ["Job", "Lease", "RedisQueue", "job_for"]

MIN_PRIORITY = -100
MAX_PRIORITY = 100
_ARRIVAL_SPAN = 2**40

_ENQUEUE = """
-- KEYS: ready, job, wake, arrivals, queues, delayed
-- ARGV: id, kind, queue, priority, max_attempts, due_ms (0: now)
-- A job that already exists (waiting or running) is left alone: overwriting its
-- hash would reset the fencing token of the worker running it.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local arrival = redis.call('INCR', KEYS[4])
local score = (100 - tonumber(ARGV[4])) * 1099511627776 + arrival
redis.call('HSET', KEYS[2], 'kind', ARGV[2], 'queue', ARGV[3], 'score', score,
           'attempts', 0, 'max_attempts', ARGV[5], 'token', '')
redis.call('SADD', KEYS[5], ARGV[3])
if tonumber(ARGV[6]) > 0 then
  redis.call('ZADD', KEYS[6], ARGV[6], ARGV[1])
  return score
end
redis.call('ZADD', KEYS[1], 'NX', score, ARGV[1])
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, 63)
return score
"""

_CLAIM = """
-- KEYS: ready, leases, paused   ARGV: deadline_ms, count, job_prefix, worker, nonce
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[2])
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = ARGV[3] .. id
  if redis.call('EXISTS', key) == 1 then
    -- A random token (not a counter): unique even after Redis lost and re-made the job.
    local token = ARGV[5] .. ':' .. i
    redis.call('HSET', key, 'token', token)
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'worker', ARGV[4])
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    local f = redis.call('HMGET', key, 'kind', 'max_attempts')
    table.insert(out, {id, token, attempts, f[1], f[2]})
  end
end
return out
"""

_HEARTBEAT = """
-- KEYS: leases   ARGV: deadline_ms, job_prefix, id1, token1, id2, token2, ...
local alive = {}
for i = 3, #ARGV, 2 do
  local token = redis.call('HGET', ARGV[2] .. ARGV[i], 'token')
  if token == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
    table.insert(alive, 1)
  else
    table.insert(alive, 0)
  end
end
return alive
"""

_COMPLETE = """
-- KEYS: leases, job   ARGV: id, token
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""

_RELEASE = """
-- KEYS: leases, ready, job, wake, delayed   ARGV: id, token, due_ms (0: now)
if redis.call('HGET', KEYS[3], 'token') ~= ARGV[2] then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[3], 'score'), ARGV[1])
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 63)
return 1
"""

_MOVE_DUE = """
-- Moves members of a deadline-scored set whose time has come back onto ready:
-- expired leases (reap) and due delayed jobs (promote).
-- KEYS: source, ready, wake   ARGV: now_ms, job_prefix
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local score = redis.call('HGET', ARGV[2] .. id, 'score')
  if score then redis.call('ZADD', KEYS[2], score, id) end
end
if #due > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 63)
end
return due
"""


@dataclass(frozen=True)
class Job:
    """Work to put on a queue; ``id`` is the DB task id as a string."""

    id: str
    kind: str
    queue: str
    priority: int = 0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"priority {self.priority} outside {MIN_PRIORITY}..{MAX_PRIORITY}")


@dataclass(frozen=True)
class Lease:
    """A claimed job: only the holder of ``token`` may complete or release it."""

    id: str
    queue: str
    kind: str
    token: str
    attempts: int
    max_attempts: int


def job_for(task: Task) -> Job:
    """The queue job that runs a DB task."""
    return Job(
        id=str(task.id),
        kind=task.kind,
        queue=task.queue,
        priority=task.priority,
        max_attempts=task.max_attempts,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisQueue:
    """The queue operations; every multi-key change is one Lua script."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)
        self._move_due = redis.register_script(_MOVE_DUE)

    async def enqueue(self, *jobs: Job, at: float | None = None) -> None:
        """Add jobs, to run now or at the UNIX time ``at``.

        A job id already waiting or running is left as it is (idempotent).
        """
        due = int(at * 1000) if at is not None and at * 1000 > _now_ms() else 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                await self._enqueue(
                    keys=[
                        names.queue_ready_key(job.queue),
                        names.job_key(job.id),
                        names.queue_wake_key(job.queue),
                        names.QUEUE_ARRIVALS_KEY,
                        names.QUEUES_KEY,
                        names.queue_delayed_key(job.queue),
                    ],
                    args=[job.id, job.kind, job.queue, job.priority, job.max_attempts, due],
                    client=pipe,
                )
            await pipe.execute()

    async def claim(
        self, queue: str, worker_id: str, count: int, lease_seconds: float
    ) -> list[Lease]:
        """Take up to ``count`` jobs (none while the queue is paused)."""
        rows = await self._claim(
            keys=[
                names.queue_ready_key(queue),
                names.queue_leases_key(queue),
                names.queue_paused_key(queue),
            ],
            args=[
                _now_ms() + int(lease_seconds * 1000),
                count,
                names.job_key(""),
                worker_id,
                secrets.token_hex(8),
            ],
        )
        return [
            Lease(
                id=_text(row[0]),
                queue=queue,
                kind=_text(row[3]),
                token=_text(row[1]),
                attempts=int(row[2]),
                max_attempts=int(row[4]),
            )
            for row in rows
        ]

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[bool]:
        """Extend leases still held; ``False`` for a lease lost to another worker.

        Answers are positional: two leases on the same job (a stale one and the
        current one) get their own answers.
        """
        by_queue: dict[str, list[int]] = {}
        for index, lease in enumerate(leases):
            by_queue.setdefault(lease.queue, []).append(index)
        deadline = _now_ms() + int(lease_seconds * 1000)
        alive = [False] * len(leases)
        for queue, indexes in by_queue.items():
            args: list[str | int] = [deadline, names.job_key("")]
            for index in indexes:
                args += [leases[index].id, leases[index].token]
            flags = await self._heartbeat(keys=[names.queue_leases_key(queue)], args=args)
            for index, flag in zip(indexes, flags, strict=True):
                alive[index] = bool(flag)
        return alive

    async def complete(self, lease: Lease) -> bool:
        """Remove a finished job; ``False`` if this worker no longer holds it."""
        done = await self._complete(
            keys=[names.queue_leases_key(lease.queue), names.job_key(lease.id)],
            args=[lease.id, lease.token],
        )
        return bool(done)

    async def release(self, lease: Lease, delay_seconds: float = 0.0) -> bool:
        """Hand a job back to its queue, at once (shutdown) or after a delay (retry).

        ``False`` if this worker no longer holds the lease.
        """
        due = _now_ms() + int(delay_seconds * 1000) if delay_seconds > 0 else 0
        done = await self._release(
            keys=[
                names.queue_leases_key(lease.queue),
                names.queue_ready_key(lease.queue),
                names.job_key(lease.id),
                names.queue_wake_key(lease.queue),
                names.queue_delayed_key(lease.queue),
            ],
            args=[lease.id, lease.token, due],
        )
        return bool(done)

    async def promote(self, queue: str) -> int:
        """Move delayed jobs that are due onto ``ready``; returns how many."""
        return len(await self._due_to_ready(names.queue_delayed_key(queue), queue))

    async def reap(self, queue: str) -> list[str]:
        """Put jobs whose lease has expired (their worker died) back on ``ready``."""
        return await self._due_to_ready(names.queue_leases_key(queue), queue)

    async def _due_to_ready(self, source: str, queue: str) -> list[str]:
        moved = await self._move_due(
            keys=[source, names.queue_ready_key(queue), names.queue_wake_key(queue)],
            args=[_now_ms(), names.job_key("")],
        )
        return [_text(job_id) for job_id in moved]

    async def wait(self, queues: Sequence[str], seconds: float) -> None:
        """Block until an enqueue on one of ``queues``, or for at most ``seconds``."""
        await self.redis.blpop([names.queue_wake_key(q) for q in queues], timeout=seconds)

    async def pause(self, queue: str) -> None:
        await self.redis.set(names.queue_paused_key(queue), "1")

    async def resume(self, queue: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(names.queue_paused_key(queue))
            pipe.lpush(names.queue_wake_key(queue), "1")
            await pipe.execute()

    async def depth(self, queue: str) -> int:
        return int(await self.redis.zcard(names.queue_ready_key(queue)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
