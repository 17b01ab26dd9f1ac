"""Reliable Redis queue: priority + FIFO waiting sets, leases with fencing tokens.

Layout per queue (names in :mod:`herald.names`, scripts in :mod:`workers._scripts`):

- ``ready`` sorted set of job ids, score = (100 - priority) * 2**40 + arrival,
  so higher priority runs first and equal priorities run in arrival order;
  ``urgent`` the same for immediate-mode jobs, claimed first and outside the
  queue's window and max-active cap;
- ``leases`` sorted set of job ids being run, score = lease deadline (ms), and
  ``active`` its capped subset: the max-active semaphore, shared by every worker
  on every machine, whose slots expire with their leases;
- ``delayed`` sorted set of job ids waiting for a time (a retry's backoff, a
  run-at), score = due time (ms); :meth:`RedisQueue.promote` moves due ones
  back. Delayed work lives in Redis, never in a worker's memory;
- ``settings`` hash mirroring the DB's queue settings that claims read;
- ``job:{id}`` hash: kind, queue, score, urgent, attempts, max_attempts, token.

A claim moves ids to ``leases`` and gives each job a new random fencing
``token`` in one Lua script. A job leaves Redis only in :meth:`RedisQueue.complete`,
which checks that token: a worker whose lease expired (and whose job another
worker took over) cannot complete it. Expired leases go back via
:meth:`RedisQueue.reap`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from redis.asyncio import Redis

from herald import names
from workers import _scripts

__all__ = ["CancelOutcome", "Job", "Lease", "LeaseState", "QueueStats", "RedisQueue", "job_for"]

MIN_PRIORITY = -100
MAX_PRIORITY = 100
_ARRIVAL_SPAN = 2**40


@dataclass(frozen=True)
class Job:
    """Work to put on a queue; ``id`` is the DB task id as a string."""

    id: str
    kind: str
    queue: str
    priority: int = 0
    max_attempts: int = 3
    immediate: bool = False

    def __post_init__(self) -> None:
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"priority {self.priority} outside {MIN_PRIORITY}..{MAX_PRIORITY}")


class LeaseState(IntEnum):
    """A heartbeat's answer for one lease."""

    LOST = 0  # another worker holds the job now (or it is gone)
    HELD = 1
    CANCEL = 2  # held, and a cancel was requested: stop the handler


class CancelOutcome(IntEnum):
    """What :meth:`RedisQueue.cancel` found."""

    ABSENT = 0
    REMOVED = 1  # it was waiting; it is gone
    SIGNALLED = 2  # it is running; its worker stops it at its next heartbeat


@dataclass(frozen=True)
class QueueStats:
    name: str
    waiting: int
    delayed: int
    running: int


@dataclass(frozen=True)
class Lease:
    """A claimed job: only the holder of ``token`` may complete or release it."""

    id: str
    queue: str
    kind: str
    token: str
    attempts: int
    max_attempts: int


class JobSource(Protocol):
    """A task as a job needs it: a DB row (ORM or Core), or a row about to be one."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def immediate(self) -> bool: ...


def job_for(task: JobSource) -> Job:
    """The queue job that runs a task."""
    return Job(
        id=str(task.id),
        kind=task.kind,
        queue=task.queue,
        priority=task.priority,
        max_attempts=task.max_attempts,
        immediate=bool(task.immediate),
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisQueue:
    """The queue operations; every multi-key change is one Lua script."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._enqueue = redis.register_script(_scripts.ENQUEUE)
        self._claim = redis.register_script(_scripts.CLAIM)
        self._heartbeat = redis.register_script(_scripts.HEARTBEAT)
        self._complete = redis.register_script(_scripts.COMPLETE)
        self._release = redis.register_script(_scripts.RELEASE)
        self._move_due = redis.register_script(_scripts.MOVE_DUE)
        self._cancel = redis.register_script(_scripts.CANCEL)

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
                        names.queue_urgent_key(job.queue),
                    ],
                    args=[
                        job.id,
                        job.kind,
                        job.queue,
                        job.priority,
                        job.max_attempts,
                        due,
                        int(job.immediate),
                    ],
                    client=pipe,
                )
            await pipe.execute()

    async def claim(
        self,
        queue: str,
        worker_id: str,
        count: int,
        lease_seconds: float,
        *,
        window_open: bool = True,
    ) -> list[Lease]:
        """Take up to ``count`` jobs: immediate ones first, then (while the queue's
        window is open and its cap allows) ready ones; none while it is paused."""
        now = _now_ms()
        rows = await self._claim(
            keys=[
                names.queue_ready_key(queue),
                names.queue_leases_key(queue),
                names.queue_settings_key(queue),
                names.queue_urgent_key(queue),
                names.queue_active_key(queue),
            ],
            args=[
                now + int(lease_seconds * 1000),
                count,
                names.job_key(""),
                worker_id,
                secrets.token_hex(8),
                now,
                int(window_open),
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

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[LeaseState]:
        """Extend leases still held; :attr:`LeaseState.LOST` for one lost to another worker,
        :attr:`LeaseState.CANCEL` for one whose task was cancelled.

        Answers are positional: two leases on the same job (a stale one and the
        current one) get their own answers.
        """
        deadline = _now_ms() + int(lease_seconds * 1000)
        answers = [LeaseState.LOST] * len(leases)
        for queue, indexes in _by_queue(leases).items():
            args: list[str | int] = [deadline, names.job_key("")]
            for index in indexes:
                args += [leases[index].id, leases[index].token]
            flags = await self._heartbeat(
                keys=[names.queue_leases_key(queue), names.queue_active_key(queue)], args=args
            )
            for index, flag in zip(indexes, flags, strict=True):
                answers[index] = LeaseState(int(flag))
        return answers

    async def complete(self, *leases: Lease) -> list[bool]:
        """Remove finished jobs; ``False`` for one this worker no longer holds."""
        done = [False] * len(leases)
        for queue, indexes in _by_queue(leases).items():
            args: list[str] = [names.job_key("")]
            for index in indexes:
                args += [leases[index].id, leases[index].token]
            flags = await self._complete(
                keys=[names.queue_leases_key(queue), names.queue_active_key(queue)], args=args
            )
            for index, flag in zip(indexes, flags, strict=True):
                done[index] = bool(flag)
        return done

    async def release(
        self, lease: Lease, delay_seconds: float = 0.0, *, refund: bool = False
    ) -> bool:
        """Hand a job back to its queue, at once (shutdown) or after a delay (retry).

        ``refund``: the run does not count as an attempt (a shutdown or a DB outage
        handed it back; it did not fail). ``False`` if this worker no longer holds
        the lease.
        """
        due = _now_ms() + int(delay_seconds * 1000) if delay_seconds > 0 else 0
        done = await self._release(
            keys=[
                names.queue_leases_key(lease.queue),
                names.queue_ready_key(lease.queue),
                names.job_key(lease.id),
                names.queue_wake_key(lease.queue),
                names.queue_delayed_key(lease.queue),
                names.queue_urgent_key(lease.queue),
                names.queue_active_key(lease.queue),
            ],
            args=[lease.id, lease.token, due, int(refund)],
        )
        return bool(done)

    async def cancel(self, job_id: str, queue: str) -> CancelOutcome:
        """Remove a waiting job, or flag a running one for its worker to stop."""
        found = await self._cancel(
            keys=[
                names.queue_ready_key(queue),
                names.queue_urgent_key(queue),
                names.queue_delayed_key(queue),
                names.job_key(job_id),
            ],
            args=[job_id],
        )
        return CancelOutcome(int(found))

    async def promote(self, queue: str) -> int:
        """Move delayed jobs that are due back to waiting; returns how many."""
        return len(await self._due_to_waiting(names.queue_delayed_key(queue), queue))

    async def reap(self, queue: str) -> list[str]:
        """Put jobs whose lease has expired (their worker died) back to waiting."""
        return await self._due_to_waiting(names.queue_leases_key(queue), queue)

    async def _due_to_waiting(self, source: str, queue: str) -> list[str]:
        moved = await self._move_due(
            keys=[
                source,
                names.queue_ready_key(queue),
                names.queue_wake_key(queue),
                names.queue_urgent_key(queue),
                names.queue_active_key(queue),
            ],
            args=[_now_ms(), names.job_key("")],
        )
        return [_text(job_id) for job_id in moved]

    async def wait(self, queues: Sequence[str], seconds: float) -> None:
        """Block until an enqueue on one of ``queues``, or for at most ``seconds``."""
        await self.redis.blpop([names.queue_wake_key(q) for q in queues], timeout=seconds)

    async def apply_settings(
        self,
        queue: str,
        *,
        paused: bool,
        max_active: int | None,
        window: str | None,
        immediate: bool,
    ) -> None:
        """Mirror a queue's DB settings into Redis, where claims read them, and wake
        its workers so a resume or a raised cap takes effect at once."""
        key = names.queue_settings_key(queue)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "paused": int(paused),
                    "max_active": "" if max_active is None else max_active,
                    "window": window or "",
                    "immediate": int(immediate),
                },
            )
            pipe.sadd(names.QUEUES_KEY, queue)
            pipe.lpush(names.queue_wake_key(queue), "1")
            pipe.ltrim(names.queue_wake_key(queue), 0, 63)
            await pipe.execute()

    async def windows(self, queues: Sequence[str]) -> dict[str, str]:
        """Each queue's window specification ("" for always open)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.hget(names.queue_settings_key(queue), "window")
            specs = await pipe.execute()
        return {queue: _text(spec or b"") for queue, spec in zip(queues, specs, strict=True)}

    async def depth(self, queue: str) -> int:
        """Jobs waiting to run now (ready and immediate)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(names.queue_ready_key(queue))
            pipe.zcard(names.queue_urgent_key(queue))
            ready, urgent = await pipe.execute()
        return int(ready) + int(urgent)

    async def stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Waiting, delayed and running counts of each queue, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zcard(names.queue_ready_key(queue))
                pipe.zcard(names.queue_urgent_key(queue))
                pipe.zcard(names.queue_delayed_key(queue))
                pipe.zcard(names.queue_leases_key(queue))
            counts = await pipe.execute()
        return [
            QueueStats(
                name=queue,
                waiting=int(counts[4 * i]) + int(counts[4 * i + 1]),
                delayed=int(counts[4 * i + 2]),
                running=int(counts[4 * i + 3]),
            )
            for i, queue in enumerate(queues)
        ]

    async def known_queues(self) -> set[str]:
        return {_text(q) for q in await self.redis.smembers(names.QUEUES_KEY)}


def _by_queue(leases: Sequence[Lease]) -> dict[str, list[int]]:
    by_queue: dict[str, list[int]] = {}
    for index, lease in enumerate(leases):
        by_queue.setdefault(lease.queue, []).append(index)
    return by_queue


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
