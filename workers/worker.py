"""The worker process: claims jobs, runs them in fixed slots, renews their leases,
passes cancel requests to their handlers, recovers the jobs of dead workers, and
shuts down without losing any."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import SQLAlchemyError

from herald.autopipeline import AutoPipelineRedis
from herald.db import Transactions, create_engine, session_factory
from herald.events import EventPublisher
from herald.health import instance_id, keep_health
from herald.logs import get_logger
from herald.redis_pool import connect
from herald.settings import Settings
from workers._waiting import backoff_delay, sleep_unless, wait_either
from workers.context import TaskRun
from workers.monitor import MONITOR_SECONDS, monitor_once_per_cluster
from workers.queue import Lease, LeaseState, RedisQueue
from workers.reconciler import reconcile_once_per_cluster
from workers.runner import Engine
from workers.window import TimeWindow, WindowError

__all__ = [
    "DEFAULT_QUEUES",
    "LEASE_SECONDS",
    "UnsafeRedis",
    "Worker",
    "check_redis_keeps_jobs",
    "serve",
]

log = get_logger(__name__)

DEFAULT_QUEUES = ("io", "cpu", "diag")
# A lease outlives one missed heartbeat but not two: a dead worker's jobs are
# back on the queue within about two heartbeat intervals (plus one reaper pass).
HEARTBEAT_SECONDS = 1.0
LEASE_SECONDS = 2.5 * HEARTBEAT_SECONDS
SHUTDOWN_GRACE_SECONDS = 10.0
# How late a due delayed job (a retry after its backoff) may start.
PROMOTE_SECONDS = 0.5
# How often one worker of the cluster checks the DB for work Redis has lost.
RECONCILE_SECONDS = 30.0
# How stale a queue's window setting may be.
WINDOW_REFRESH_SECONDS = 1.0
# Most jobs taken in one claim: one Redis script and one DB transaction for all.
CLAIM_BATCH = 100
MAX_OUTAGE_BACKOFF = 5.0


class Worker:
    """Runs up to ``concurrency`` jobs at once from ``queues``."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        queues: Sequence[str],
        concurrency: int,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.queue = engine.queue
        self.redis = engine.queue.redis
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.id = instance_id()
        engine.on_let_go = self._let_go
        # Every lease this worker holds, claimed until completed or handed back.
        self._held: dict[str, Lease] = {}
        self._handlers: dict[str, tuple[TaskRun, asyncio.Task[None]]] = {}
        self._slot_free = asyncio.Event()
        self._zone = ZoneInfo(settings.timezone)
        self._windows: dict[str, TimeWindow | None] = {}
        self._windows_read = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        settled = asyncio.Event()
        helpers = {
            asyncio.create_task(self._forever(stop, "heartbeat", self._heartbeat_once)),
            asyncio.create_task(self._forever(stop, "reaper", self._reap_once)),
            asyncio.create_task(self._forever(stop, "reconciler", self._reconcile_once)),
            asyncio.create_task(self._forever(stop, "monitor", self._monitor_once)),
            asyncio.create_task(
                keep_health(self.redis, "worker", self.id, stop, queues=self.queues),
                name="health",
            ),
        }
        settler = asyncio.create_task(self.engine.settle_forever(settled), name="settle")
        log.info("worker.started", queues=self.queues, concurrency=self.concurrency)
        try:
            await self._forever(stop, "claim", self._claim_once)
        finally:
            stop.set()
            await self._drain()
            settled.set()
            await settler
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            log.info("worker.stopped")

    async def _forever(
        self, stop: asyncio.Event, what: str, once: Callable[[asyncio.Event], Awaitable[None]]
    ) -> None:
        """Run ``once`` until stopped, riding out Redis and DB outages with backoff."""
        failures = 0
        while not stop.is_set():
            try:
                await once(stop)
                failures = 0
            except (RedisError, SQLAlchemyError, OSError) as exc:
                failures += 1
                delay = backoff_delay(failures, MAX_OUTAGE_BACKOFF)
                log.warning("backend.unavailable", loop=what, error=str(exc), retry_in=delay)
                await sleep_unless(stop, delay)

    # --- taking work ----------------------------------------------------------
    async def _claim_once(self, stop: asyncio.Event) -> None:
        free = self.concurrency - len(self._held)
        if free <= 0:
            await wait_either(stop, self._slot_free)
            self._slot_free.clear()
            return
        open_now = await self._open_queues()
        leases: list[Lease] = []
        for name in self.queues:
            want = min(free - len(leases), CLAIM_BATCH)
            if want <= 0:
                break
            leases += await self.queue.claim(
                name, self.id, want, LEASE_SECONDS, window_open=open_now[name]
            )
        if not leases:
            await self.queue.wait(self.queues, seconds=1.0)
            return
        for lease in leases:
            self._held[lease.token] = lease
        try:
            runs = await self.engine.start(leases)
        except BaseException:
            # The DB or Redis failed mid-start: give the jobs back rather than renew
            # leases nobody runs. A re-claim finds any that did finish and completes them.
            await asyncio.shield(self._hand_back(leases))
            raise
        for run in runs:
            task = asyncio.create_task(self._run_one(run), name=f"task-{run.id}")
            self._handlers[run.lease.token] = (run, task)

    async def _open_queues(self) -> dict[str, bool]:
        """Whether each served queue's window is open now (settings re-read each second)."""
        if time.monotonic() - self._windows_read > WINDOW_REFRESH_SECONDS:
            self._windows = {}
            for name, spec in (await self.queue.windows(self.queues)).items():
                try:
                    self._windows[name] = TimeWindow.parse(spec) if spec else None
                except WindowError as exc:
                    # Settings are checked when written; a bad one keeps the queue shut.
                    log.error("queue.bad_window", queue=name, error=str(exc))
                    self._windows[name] = TimeWindow(spec, ())
            self._windows_read = time.monotonic()
        now = datetime.now(self._zone)
        return {
            name: window is None or window.is_open(now)
            for name in self.queues
            for window in [self._windows.get(name)]
        }

    async def _run_one(self, run: TaskRun) -> None:
        structlog.contextvars.clear_contextvars()
        try:
            await self.engine.run(run)
        except asyncio.CancelledError:
            # Shutdown: hand the job back for another worker.
            await asyncio.shield(self._hand_back([run.lease]))
            raise
        finally:
            self._handlers.pop(run.lease.token, None)

    def _let_go(self, lease: Lease) -> None:
        if self._held.pop(lease.token, None) is not None:
            self._slot_free.set()

    async def _hand_back(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            with contextlib.suppress(RedisError):
                await self.queue.release(lease, refund=True)
            log.warning("job.handed_back", task_id=lease.id)
            self._let_go(lease)

    # --- keeping leases -----------------------------------------------------------
    async def _heartbeat_once(self, stop: asyncio.Event) -> None:
        await sleep_unless(stop, HEARTBEAT_SECONDS)
        held = list(self._held.values())
        if not held:
            return
        answers = await self.queue.heartbeat(held, LEASE_SECONDS)
        for lease, answer in zip(held, answers, strict=True):
            running = self._handlers.get(lease.token)
            if answer == LeaseState.HELD or running is None:
                continue
            run, task = running
            if answer == LeaseState.LOST:
                # Another worker owns it now (our lease expired): stop our copy.
                log.warning("lease.lost", task_id=lease.id)
                run.lease_lost = True
            else:
                log.info("task.cancel_requested", task_id=lease.id)
                run.cancel_requested = True
            task.cancel()

    async def _reap_once(self, stop: asyncio.Event) -> None:
        """Recover expired leases and promote due delayed jobs, on every queue served."""
        for name in self.queues:
            recovered = await self.queue.reap(name)
            if recovered:
                log.warning("jobs.recovered", queue=name, task_ids=recovered)
            await self.queue.promote(name)
        await sleep_unless(stop, PROMOTE_SECONDS)

    async def _reconcile_once(self, stop: asyncio.Event) -> None:
        await reconcile_once_per_cluster(self.engine.sessions, self.queue, RECONCILE_SECONDS)
        await sleep_unless(stop, RECONCILE_SECONDS)

    async def _monitor_once(self, stop: asyncio.Event) -> None:
        """Queue samples, backlog alerts, the alert sweep: once per cluster per period."""
        await monitor_once_per_cluster(self.engine.services, MONITOR_SECONDS)
        await sleep_unless(stop, MONITOR_SECONDS)

    # --- stopping -------------------------------------------------------------------
    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back."""
        running = {task for _, task in self._handlers.values()}
        if not running:
            return
        log.info("worker.draining", running=len(running))
        _, pending = await asyncio.wait(running, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in pending:
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
    # One connection per ten job slots (plus the worker's own loops) is plenty: a
    # Redis call takes microseconds, so jobs queue briefly for a connection.
    slots = concurrency or settings.worker_concurrency
    redis = connect(settings.redis_url, max_connections=8 + slots // 10)
    handler_redis = AutoPipelineRedis(connection_pool=redis.connection_pool)
    db_engine = create_engine(settings)
    transactions = Transactions(db_engine)
    try:
        await check_redis_keeps_jobs(redis)
        engine = Engine(
            settings,
            session_factory(db_engine),
            RedisQueue(redis),
            EventPublisher(redis),
            transactions,
            handler_redis,
        )
        worker = Worker(settings, engine, queues, slots)
        await worker.run(stop)
    finally:
        await handler_redis.aclose()
        await redis.aclose()
        transactions.close()
        await db_engine.dispose()
