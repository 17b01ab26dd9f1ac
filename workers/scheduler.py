"""The scheduler: submits each recurring job's task at its times, once per cluster
however many ``herald scheduler`` processes run.

Every scheduler ticks; for each firing one wins. Three layers make it once:

1. **A cursor per job in Redis** (``handled``: the latest firing dealt with). A
   scheduler that finds the cursor at or past a firing leaves it alone.
2. **A claim key per firing** (``SET NX`` with a 10 s expiry, checked against the
   cursor in the same script): of the schedulers that see the firing due, one
   claims it and submits; the others look again a moment later and find the
   cursor moved. A winner that dies leaves a claim that expires, and another
   scheduler submits instead.
3. **The task's idempotency key** ``schedule:{job}:{firing time, UTC ISO}``,
   unique in the database: if Redis lost the cursor and the claim (a FLUSHALL,
   a restart without persistence), a second submit of the same firing returns
   the first task and creates nothing.

The cursor also carries the missed-run policy across restarts. Every firing
dealt with within :data:`GRACE_SECONDS` of its time runs, each once. One that no
scheduler dealt with in that time was *missed* (every scheduler was down, or
Redis or the database was for longer than that), and a run of missed firings is
one decision: a job with ``missed = "skip"`` drops them; one with ``missed =
"once"`` runs once, for the latest, if it is at most :data:`CATCH_UP_SECONDS`
old. If Redis has lost a job's cursor, it is rebuilt from the job's latest task
in the database, else started at the present (a firing due within the grace
still runs: the scheduler may have started a moment late).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.db import Transactions, create_engine, session_factory
from herald.health import instance_id, keep_health
from herald.logs import get_logger
from herald.redis_pool import connect
from herald.settings import Settings
from workers import _schedule_state as state
from workers._waiting import backoff_delay, sleep_unless
from workers.control import TaskControlError, TaskRequest, submit_tasks
from workers.kinds import UnknownKind, kind_named
from workers.queue import RedisQueue
from workers.schedule import MissedPolicy, ScheduledJob

__all__ = [
    "CATCH_UP_SECONDS",
    "GRACE_SECONDS",
    "Firing",
    "FiringOutcome",
    "Scheduler",
    "serve",
]

log = get_logger(__name__)

# A firing handled this late is still on time; later, it was missed.
GRACE_SECONDS = 60.0
# The oldest missed firing a `missed = "once"` job still catches up.
CATCH_UP_SECONDS = 24 * 3600.0
# The longest a scheduler sleeps between looks, so a stop or a clock step is noticed.
TICK_SECONDS = 1.0
# How soon a scheduler looks again at a firing another one has claimed.
BUSY_RETRY_SECONDS = 0.2
# Firings of one job dealt with in one look (an every-second job a minute behind: 60).
MAX_FIRINGS_PER_LOOK = 100
MAX_OUTAGE_BACKOFF = 5.0


class FiringOutcome(StrEnum):
    FIRED = "fired"  # the task was submitted
    ALREADY = "already"  # the database already held this firing's task
    MISSED = "missed"  # too late for the job's missed-run policy: not run
    UNKNOWN_KIND = "unknown_kind"  # no such task kind is registered: skipped
    REJECTED = "rejected"  # the task request was refused: skipped


@dataclass(frozen=True)
class Firing:
    """What one scheduler did with one firing of a job."""

    job: str
    due: datetime
    outcome: FiringOutcome
    task_id: int | None = None
    late: float = 0.0  # seconds after its time


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Scheduler:
    """Fires the enabled ``jobs``; :meth:`tick` handles whatever is due at ``clock()``."""

    def __init__(
        self,
        jobs: Sequence[ScheduledJob],
        *,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.jobs = [job for job in jobs if job.enabled]
        self.redis = redis
        self.sessions = sessions
        self.transactions = transactions
        self.queue = RedisQueue(redis)
        self.clock = clock
        self.owner = owner or instance_id()
        self._state = state.ScheduleState(redis)
        # When to look at each job next: its next firing, or soon when another
        # scheduler holds the claim on a due one. In memory: a look costs Redis nothing
        # until then.
        self._next_look: dict[str, float] = {}

    def announce(self) -> None:
        """Log the schedule once at start: each job and its next time; unknown kinds."""
        now = _at(self.clock())
        for job in self.jobs:
            upcoming = job.when.next_after(now)
            log.info(
                "schedule.job",
                job=job.name,
                cron=job.cron,
                kind=job.kind,
                next=upcoming.isoformat() if upcoming else None,
                missed=job.missed.value,
            )
            try:
                kind_named(job.kind)
            except UnknownKind:
                log.warning(
                    "schedule.unknown_kind",
                    job=job.name,
                    kind=job.kind,
                    detail="no such task kind is registered: its firings will be skipped",
                )

    # --- one look at every job -------------------------------------------------------
    async def tick(self) -> list[Firing]:
        """Handle every firing due now that no scheduler has handled yet."""
        now = self.clock()
        firings: list[Firing] = []
        for job in self.jobs:
            if now >= self._next_look.get(job.name, 0.0):
                firings += await self._look(job, now)
        return firings

    def seconds_to_next_look(self) -> float:
        nearest = min(self._next_look.values(), default=float("inf"))
        return max(0.0, min(nearest - self.clock(), TICK_SECONDS))

    async def _look(self, job: ScheduledJob, now: float) -> list[Firing]:
        """Deal with the job's firings from its cursor up to ``now``, oldest first: each
        on-time one runs; a run of missed ones is one decision under the job's policy."""
        cursor = await self._cursor(job, now)
        firings: list[Firing] = []
        for _ in range(MAX_FIRINGS_PER_LOOK):
            first = job.when.next_after(_at(cursor))
            if first is None or first.timestamp() > now:
                self._next_look[job.name] = first.timestamp() if first else float("inf")
                return firings
            missed_from = None
            due: datetime | None = first
            if now - first.timestamp() > GRACE_SECONDS:
                missed_from = first
                due = job.when.latest_between(_at(cursor), _at(now - GRACE_SECONDS))
            assert due is not None  # `first` itself lies in that span
            claim = await self._state.claim(job.name, due, self.owner)
            if claim.status is state.ClaimStatus.BUSY:
                self._next_look[job.name] = now + BUSY_RETRY_SECONDS
                return firings
            if claim.status is state.ClaimStatus.HANDLED:
                cursor = claim.handled  # another scheduler got there first
                continue
            try:
                firing = await self._handle(job, due, missed_from, now)
            except BaseException:
                # The claim goes at once, so another scheduler (or this one's next look)
                # takes the firing over without waiting for the claim to expire.
                with contextlib.suppress(RedisError):
                    await asyncio.shield(self._state.release(job.name, due, self.owner))
                raise
            ran = firing.outcome in (FiringOutcome.FIRED, FiringOutcome.ALREADY)
            task_id = firing.task_id if ran else None
            await asyncio.shield(self._state.commit(job.name, due, task_id, self.owner))
            firings.append(firing)
            cursor = due.timestamp()
        self._next_look[job.name] = 0.0  # more to do: at the next tick
        return firings

    async def _cursor(self, job: ScheduledJob, now: float) -> float:
        """The job's cursor; rebuilt from the database (or started at ``now``) if Redis
        has none."""
        handled = await self._state.handled(job.name)
        if handled is not None:
            return handled
        last = await state.last_fired_in_db(self.sessions, job.name)
        if last is not None:
            start = last.due.timestamp()
        else:
            # New to the cluster: nothing before now was missed, but a firing due
            # within the grace (a scheduler started a moment late) still runs.
            recent = job.when.latest_between(_at(now - GRACE_SECONDS), _at(now))
            start = recent.timestamp() - 1 if recent else now
        handled = await self._state.start_cursor(job.name, start, last)
        log.info(
            "schedule.cursor_started",
            job=job.name,
            source="database" if last else "now",
            handled=_at(handled).isoformat(),
        )
        return handled

    async def _handle(
        self, job: ScheduledJob, due: datetime, missed_from: datetime | None, now: float
    ) -> Firing:
        late = round(now - due.timestamp(), 3)
        if missed_from is None:
            return await self._submit(job, due, late)
        catch_up = job.missed is MissedPolicy.ONCE and late <= CATCH_UP_SECONDS
        log.warning(
            "schedule.missed",
            job=job.name,
            first_missed=missed_from.isoformat(),
            latest_missed=due.isoformat(),
            late_seconds=late,
            policy=job.missed.value,
            action="run once now" if catch_up else "skip: wait for the next time",
        )
        if not catch_up:
            return Firing(job.name, due, FiringOutcome.MISSED, late=late)
        return await self._submit(job, due, late)

    async def _submit(self, job: ScheduledJob, due: datetime, late: float) -> Firing:
        request = TaskRequest(
            kind=job.kind,
            params=job.params,
            priority=job.priority,
            key=state.firing_key(job.name, due),
            queue=job.queue,
        )
        fields = {"job": job.name, "kind": job.kind, "due": due.isoformat(), "late": late}
        try:
            [submitted] = await submit_tasks(self.transactions, self.queue, [request])
        except UnknownKind:
            log.error("schedule.unknown_kind", **fields, detail="firing skipped")
            return Firing(job.name, due, FiringOutcome.UNKNOWN_KIND, late=late)
        except TaskControlError as exc:
            log.error("schedule.rejected", **fields, error=str(exc), detail="firing skipped")
            return Firing(job.name, due, FiringOutcome.REJECTED, late=late)
        if not submitted.created:
            # Redis had lost track of this firing, or a claim expired under a slow
            # submit: the database's key kept it to one task.
            log.info("schedule.already_submitted", **fields, task_id=submitted.id)
            return Firing(job.name, due, FiringOutcome.ALREADY, submitted.id, late)
        log.info("schedule.fired", **fields, task_id=submitted.id)
        return Firing(job.name, due, FiringOutcome.FIRED, submitted.id, late)

    # --- the process loop -------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, riding out Redis and database outages."""
        failures = 0
        while not stop.is_set():
            try:
                await self.tick()
                failures = 0
                wait = self.seconds_to_next_look()
            except (RedisError, SQLAlchemyError, OSError) as exc:
                failures += 1
                wait = backoff_delay(failures, MAX_OUTAGE_BACKOFF)
                log.warning("backend.unavailable", loop="scheduler", error=str(exc), retry_in=wait)
            await sleep_unless(stop, wait)


async def serve(settings: Settings, stop: asyncio.Event, jobs: Sequence[ScheduledJob]) -> None:
    """Run a scheduler until ``stop`` is set."""
    redis = connect(settings.redis_url, max_connections=8)
    db_engine = create_engine(settings)
    transactions = Transactions(db_engine)
    try:
        scheduler = Scheduler(
            jobs,
            redis=redis,
            sessions=session_factory(db_engine),
            transactions=transactions,
        )
        names = [job.name for job in scheduler.jobs]
        log.info("scheduler.started", jobs=names, timezone=settings.timezone)
        scheduler.announce()
        health = asyncio.create_task(
            keep_health(redis, "scheduler", scheduler.owner, stop, jobs=names), name="health"
        )
        try:
            await scheduler.run(stop)
        finally:
            stop.set()
            await health
        log.info("scheduler.stopped")
    finally:
        await redis.aclose()
        transactions.close()
        await db_engine.dispose()
