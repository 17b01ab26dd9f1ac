"""The worker process: claims jobs, runs them in fixed slots, renews their leases,
recovers the jobs of dead workers, and shuts down without losing any."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from herald.db import create_engine, session_factory
from herald.events import EventPublisher
from herald.health import instance_id, keep_health
from herald.logs import get_logger
from herald.settings import Settings
from workers.queue import Lease, RedisQueue
from workers.reconciler import reconcile_once_per_cluster
from workers.runner import JobRunner

__all__ = [
    "DEFAULT_QUEUES",
    "LEASE_SECONDS",
    "UnsafeRedis",
    "Worker",
    "check_redis_keeps_jobs",
    "serve",
]

log = get_logger(__name__)

DEFAULT_QUEUES = ("io", "cpu")
# A lease outlives one missed heartbeat but not two: a dead worker's jobs are
# back on the queue within about two heartbeat intervals (plus one reaper pass).
HEARTBEAT_SECONDS = 1.0
LEASE_SECONDS = 2.5 * HEARTBEAT_SECONDS
SHUTDOWN_GRACE_SECONDS = 10.0
# How late a due delayed job (a retry after its backoff) may start.
PROMOTE_SECONDS = 0.5
# How often one worker of the cluster checks the DB for work Redis has lost.
RECONCILE_SECONDS = 30.0
MAX_OUTAGE_BACKOFF = 5.0


class Worker:
    """Runs up to ``concurrency`` jobs at once from ``queues``."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        runner: JobRunner,
        queues: Sequence[str],
        concurrency: int,
    ) -> None:
        self.settings = settings
        self.queue = RedisQueue(redis)
        self.redis = redis
        self.runner = runner
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.id = instance_id()
        self._running: dict[asyncio.Task[None], Lease] = {}

    async def run(self, stop: asyncio.Event) -> None:
        helpers = {
            asyncio.create_task(self._forever(stop, "heartbeat", self._heartbeat_once)),
            asyncio.create_task(self._forever(stop, "reaper", self._reap_once)),
            asyncio.create_task(self._forever(stop, "reconciler", self._reconcile_once)),
            asyncio.create_task(
                keep_health(self.redis, "worker", self.id, stop, queues=self.queues),
                name="health",
            ),
        }
        log.info("worker.started", queues=self.queues, concurrency=self.concurrency)
        try:
            await self._forever(stop, "claim", self._claim_once)
        finally:
            await self._shutdown()
            stop.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            log.info("worker.stopped")

    async def _forever(
        self, stop: asyncio.Event, what: str, once: Callable[[asyncio.Event], Awaitable[None]]
    ) -> None:
        """Run ``once`` until stopped, riding out Redis outages with backoff."""
        failures = 0
        while not stop.is_set():
            try:
                await once(stop)
                failures = 0
            except RedisError as exc:
                failures += 1
                delay = min(0.1 * 2**failures, MAX_OUTAGE_BACKOFF)
                log.warning("redis.unavailable", loop=what, error=str(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _claim_once(self, stop: asyncio.Event) -> None:
        free = self.concurrency - len(self._running)
        claimed = 0
        for name in self.queues:
            if free - claimed <= 0:
                break
            for lease in await self.queue.claim(name, self.id, free - claimed, LEASE_SECONDS):
                claimed += 1
                self._start(lease)
        if claimed:
            return
        if free <= 0:
            await self._wait_for_slot(stop)
        else:
            await self.queue.wait(self.queues, seconds=1.0)

    def _start(self, lease: Lease) -> None:
        task = asyncio.create_task(self._run_one(lease), name=f"job-{lease.id}")
        self._running[task] = lease
        task.add_done_callback(self._running.pop)

    async def _run_one(self, lease: Lease) -> None:
        structlog.contextvars.clear_contextvars()
        try:
            await self.runner.run(lease)
        except asyncio.CancelledError:
            # Shutdown or a lost lease: hand the job back for another worker.
            await asyncio.shield(self.queue.release(lease))
            raise
        except Exception:
            log.exception("job.crashed", task_id=lease.id)

    async def _wait_for_slot(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopping, *self._running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def _heartbeat_once(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
        running = list(self._running.items())
        if not running:
            return
        alive = await self.queue.heartbeat([lease for _, lease in running], LEASE_SECONDS)
        for (task, lease), held in zip(running, alive, strict=True):
            if not held:
                # Another worker owns it now (our lease expired): stop our copy.
                log.warning("lease.lost", task_id=lease.id)
                task.cancel()

    async def _reap_once(self, stop: asyncio.Event) -> None:
        """Recover expired leases and promote due delayed jobs, on every queue served."""
        for name in self.queues:
            recovered = await self.queue.reap(name)
            if recovered:
                log.warning("jobs.recovered", queue=name, task_ids=recovered)
            await self.queue.promote(name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PROMOTE_SECONDS)

    async def _reconcile_once(self, stop: asyncio.Event) -> None:
        await reconcile_once_per_cluster(self.runner.sessions, self.queue, RECONCILE_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RECONCILE_SECONDS)

    async def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back."""
        if not self._running:
            return
        log.info("worker.draining", running=len(self._running))
        _, pending = await asyncio.wait(set(self._running), timeout=SHUTDOWN_GRACE_SECONDS)
        for task in pending:
            log.warning("job.handed_back", task_id=self._running[task].id)
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class UnsafeRedis(RuntimeError):
    """Redis is configured in a way that could lose queued work."""


async def check_redis_keeps_jobs(redis: Redis) -> None:
    """Refuse a Redis whose eviction policy may drop job keys under memory pressure.

    ``allkeys-*`` policies evict any key; ``volatile-*`` ones only keys with a
    TTL, which job keys never have. Managed Redis that hides CONFIG is trusted.
    """
    try:
        config = await redis.config_get("maxmemory-policy")
    except ResponseError:
        log.warning("redis.config_hidden", check="maxmemory-policy")
        return
    policy = config.get("maxmemory-policy", "noeviction")
    if isinstance(policy, bytes):
        policy = policy.decode()
    if str(policy).startswith("allkeys"):
        raise UnsafeRedis(
            f"Redis maxmemory-policy is {policy!r}, which may evict queued jobs; "
            "use noeviction (or a volatile-* policy)"
        )


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    queues: Sequence[str] = DEFAULT_QUEUES,
    concurrency: int | None = None,
) -> None:
    """Run a worker until ``stop`` is set."""
    redis = Redis.from_url(settings.redis_url)
    engine = create_engine(settings)
    try:
        await check_redis_keeps_jobs(redis)
        runner = JobRunner(
            settings, session_factory(engine), RedisQueue(redis), EventPublisher(redis)
        )
        worker = Worker(settings, redis, runner, queues, concurrency or settings.worker_concurrency)
        await worker.run(stop)
    finally:
        await redis.aclose()
        await engine.dispose()
